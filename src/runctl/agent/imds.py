"""EC2 instance metadata (IMDSv2) for the agent: who am I, and is a spot interruption coming?

IMDSv2 only: a session token is fetched first (``PUT /latest/api/token``) and sent with every
read; it is refreshed before it expires. The endpoint defaults to ``http://169.254.169.254`` and
is configurable so tests point it at a fake server on loopback: ``--imds-endpoint``, else
``RUNCTL_IMDS_ENDPOINT``, else ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (the name boto3 and the AWS
SDKs read, so one setting moves both the agent and the SDK's instance-role credentials).
stdlib ``urllib`` only: the agent stays dependency-light.

:class:`InterruptionWatcher` polls ``spot/instance-action`` (404 = nothing scheduled) every
``interval`` seconds (default 5, as AWS recommends) in a daemon thread and calls ``on_notice``
once with the action and its time. Errors reading IMDS are logged and retried at the next poll:
a flaky metadata service must never stop the job.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

DEFAULT_ENDPOINT = "http://169.254.169.254"
ENDPOINT_ENV = "RUNCTL_IMDS_ENDPOINT"
SDK_ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
TOKEN_TTL_S = 21600

log = logging.getLogger("runctl.agent.imds")


@dataclass(frozen=True)
class InterruptionNotice:
    """A scheduled spot interruption: ``action`` is terminate, stop or hibernate."""

    action: str
    time: datetime | None

    def seconds_left(self, now: datetime | None = None) -> float | None:
        if self.time is None:
            return None
        return (self.time - (now or datetime.now(UTC))).total_seconds()


class Imds:
    """A small IMDSv2 client."""

    def __init__(self, endpoint: str | None = None, *, timeout: float = 2.0) -> None:
        self.endpoint = (
            endpoint or os.environ.get(ENDPOINT_ENV) or os.environ.get(SDK_ENDPOINT_ENV) or DEFAULT_ENDPOINT
        ).rstrip("/")
        self.timeout = timeout
        self._token: str | None = None
        self._token_expires = 0.0

    def _fetch_token(self) -> str:
        if self._token is None or time.monotonic() > self._token_expires:
            request = urllib.request.Request(
                f"{self.endpoint}/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                self._token = response.read().decode()
            self._token_expires = time.monotonic() + TOKEN_TTL_S - 60
        return self._token

    def get(self, path: str) -> str | None:
        """The metadata at ``path`` (e.g. ``instance-id``), or None when it does not exist (404)."""
        request = urllib.request.Request(
            f"{self.endpoint}/latest/meta-data/{path}",
            headers={"X-aws-ec2-metadata-token": self._fetch_token()},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code == 401:  # token expired or revoked: fetch a new one next time
                self._token = None
            raise

    def instance_action(self) -> InterruptionNotice | None:
        """The pending spot interruption, if any."""
        body = self.get("spot/instance-action")
        if body is None:
            return None
        data = json.loads(body)
        when = data.get("time")
        parsed = datetime.fromisoformat(when.replace("Z", "+00:00")) if when else None
        return InterruptionNotice(action=data.get("action", "terminate"), time=parsed)


class InterruptionWatcher:
    """Polls IMDS for a spot notice in a daemon thread; calls ``on_notice`` once."""

    def __init__(
        self,
        imds: Imds,
        on_notice: Callable[[InterruptionNotice], None],
        *,
        interval: float = 5.0,
    ) -> None:
        self.imds = imds
        self.on_notice = on_notice
        self.interval = interval
        self.notice: InterruptionNotice | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imds-watcher", daemon=True)

    def start(self) -> InterruptionWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                notice = self.imds.instance_action()
            except (OSError, ValueError) as exc:
                log.warning("reading the spot notice from IMDS failed (will retry): %s", exc)
                notice = None
            if notice is not None:
                self.notice = notice
                self.on_notice(notice)
                return
            self._stop.wait(self.interval)
