"""The controller's notifications for one job: ledger events relayed to ``[notify] urls``.

What happened to a job is already a ledger event; the controller relays the ones a person
wants to hear about (:data:`RELAYED`), each once: the notice id is the event's id, and a
``notify.sent`` event records it, so a reattached controller (``runctl jobs wait``) does not
send it again. The agent sends what only its machine sees (preempted, hung), also with the
controller gone (:mod:`runctl.agent.runner`).
"""

from __future__ import annotations

from collections.abc import Sequence

from runctl.clients.notify import Notifier
from runctl.core.cost import job_cost
from runctl.core.ledger import Event, Ledger
from runctl.core.units import usd

#: Event kind → notice title.
RELAYED = {
    "job.finished": "job ended",
    "job.preemption": "job resumed after a preemption",
    "job.resumed": "job resumed",
    "job.restart": "job restarted",
    "recovery.end": "job not recovered",
    "budget.warning": "budget warning",
    "budget.stop": "budget reached: job stopped",
    "resource.release_failed": "RELEASE NOT VERIFIED: a machine may still be billing",
}
SENT_EVENT = "notify.sent"


class JobNotices:
    """Relays one job's notable ledger events to a :class:`Notifier`."""

    def __init__(self, ledger: Ledger, job_id: str, urls: Sequence[str]) -> None:
        self.ledger, self.job_id = ledger, job_id
        self.notifier = Notifier(urls)
        if self.notifier.urls:
            self.notifier.sent = {str(e.data.get("notice")) for e in self._events() if e.kind == SENT_EVENT}

    def _events(self) -> list[Event]:
        return self.ledger.events(job_id=self.job_id, limit=100_000)

    def relay(self) -> None:
        """Send every notable event of the job not sent before (never raises)."""
        if not self.notifier.urls:
            return
        for event in self._events():
            notice = f"event-{event.id}"
            if event.kind not in RELAYED or notice in self.notifier.sent:
                continue
            job = self.ledger.get_job(self.job_id)
            body = f"job {job.id} ({job.name}) {job.state}: {event.message}"
            if event.kind == "job.finished":
                body += f"; cost {usd(job_cost(self.ledger, job.id))}"
            delivered = self.notifier.send(notice, f"runctl: {RELAYED[event.kind]}", body)
            self.ledger.add_event(
                SENT_EVENT,
                f"{RELAYED[event.kind]}: {'delivered' if delivered else 'not delivered'}",
                job_id=self.job_id,
                data={"notice": notice, "delivered": delivered},
            )
