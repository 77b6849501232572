"""Notifications: one message per event to the user's apprise URLs (Slack, Discord, ntfy,
email, a generic JSON webhook, …). apprise is a well-kept library of those clients; it is
imported on the first message, so a run without ``[notify] urls`` never loads it.

Rules:

* **Sent once.** Every notice has an id; a :class:`Notifier` sends an id at most once, whether
  or not it was delivered (a flaky webhook must not turn into a flood of retries).
* **Never fatal.** A URL apprise rejects, a receiver that is down or an error inside apprise is
  a WARNING on the ``runctl.notify`` logger naming the notice, never the URL; the job goes on.
* **Secrets.** URLs carry tokens: they are :class:`pydantic.SecretStr` in the config,
  registered with :mod:`runctl.core.secrets` (masked in every log line and error), never stored
  in the ledger, never in a command line or a machine's environment (an SSM command's text is
  kept in the account's command history): the controller writes them into the job's own
  storage (``control/notify.json``, readable with the job's credentials only) and the agent
  reads them there. Messages carry the job id, name, state, detail and cost: nothing from the
  configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from runctl.core import secrets

log = logging.getLogger("runctl.notify")


class Notifier:
    """Sends notices to ``urls`` (apprise URLs), each id once (see the module docstring)."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = [u for u in urls if u]
        secrets.register_all(self.urls)
        self.sent: set[str] = set()

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
