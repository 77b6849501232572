"""Notifications: one message per event to the user's apprise URLs (Slack, Discord, ntfy,
email, a generic JSON webhook, …). apprise is a well-kept library of those clients; it is
imported on the first message, so a run without ``[notify] urls`` never loads it.

Rules:

* **Sent once.** Every notice has an id; a :class:`Notifier` sends an id at most once, whether
  or not it was delivered (a flaky webhook must not turn into a flood of retries).
* **Never fatal.** A URL apprise rejects, a receiver that is down or an error inside apprise is
  a WARNING on the ``runctl.notify`` logger naming the notice, never the URL; the job goes on.
* **Secrets.** URLs carry tokens: they are :class:`pydantic.SecretStr` in the config, never
  logged, never stored in the ledger, and reach the agent in the environment variable
  :data:`URLS_ENV` (stripped from the script's environment), like the storage credentials.
  Messages carry the job id, name, state, detail and cost: nothing from the configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

log = logging.getLogger("runctl.notify")

#: The environment variable that carries the URLs to the agent (one per line).
URLS_ENV = "RUNCTL_NOTIFY_URLS"


class Notifier:
    """Sends notices to ``urls`` (apprise URLs), each id once (see the module docstring)."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = [u for u in urls if u]
        self.sent: set[str] = set()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Notifier:
        """The agent's notifier: the URLs the controller put in :data:`URLS_ENV`."""
        return cls(environ.get(URLS_ENV, "").splitlines())

    def env(self) -> dict[str, str]:
        """What a machine's environment needs for its agent to notify (nothing without URLs)."""
        return {URLS_ENV: "\n".join(self.urls)} if self.urls else {}

    def send(self, notice_id: str, title: str, body: str) -> bool:
        """Send one notice; True when every URL took it. False also when it was sent before or
        there are no URLs."""
        if not self.urls or notice_id in self.sent:
            return False
        self.sent.add(notice_id)
        try:
            import apprise

            sender = apprise.Apprise()
            accepted = sum(bool(sender.add(url)) for url in self.urls)
            delivered = bool(sender.notify(title=title, body=f"{body}\n(runctl notice {notice_id})"))
        except Exception as exc:  # apprise's own failure must not end a job
            log.warning("notice %s (%s) not sent: %s", notice_id, title, type(exc).__name__)
            return False
        if accepted < len(self.urls) or not delivered:
            log.warning(
                "notice %s (%s) not delivered to every URL (%d of %d URLs valid); nothing else is affected",
                notice_id,
                title,
                accepted,
                len(self.urls),
            )
            return False
        return True
