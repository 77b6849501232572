"""``runctl top``: a live dashboard of jobs, resources, events, spend and GPU use (textual).

The figures come from :func:`runctl.workflows.dashboard.snapshot`, re-read every
``interval`` seconds; the app only lays them out and turns keys into library calls:

* ``l`` / Enter opens the selected job's log (followed live; Esc goes back);
* ``s`` stops the selected job after a confirmation: :func:`runctl.workflows.jobs.cancel_job`
  (graceful: SIGTERM, the script saves its checkpoint, the job is recorded ``cancelled``),
  run in a worker thread so the dashboard keeps refreshing while the job winds down;
* ``r`` refreshes now, ``q`` quits.

This module imports textual at import time; ``runctl top`` imports it only when it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, Log, Sparkline, Static

from runctl.core.errors import RunctlError
from runctl.core.ledger import Job, Ledger
from runctl.core.units import duration, usd
from runctl.workflows.dashboard import (
    SERIES_WINDOW_S,
    HeartbeatSource,
    JobStatus,
    Snapshot,
    ledger_heartbeats,
    snapshot,
)
from runctl.workflows.jobs import cancel_job

LOG_TAIL_BYTES = 64 * 1024


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no question; ``y`` or the Yes button confirms, ``n``/Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ("y", "answer(True)", "Yes"),
        ("n", "answer(False)", "No"),
        ("escape", "answer(False)", "No"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    #dialog { width: 64; height: auto; border: thick $warning; padding: 1 2; background: $surface; }
    #buttons { height: auto; margin-top: 1; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question)
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class LogScreen(Screen[None]):
    """A job's log, from its last 64 KiB, followed as it grows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ("escape", "app.pop_screen", "Back"),
        ("q", "app.pop_screen", "Back"),
    ]

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job
        self.path = Path(job.log_path) if job.log_path else None
        self._offset = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label(f"log of {self.job.id} ({self.job.name}): {self.path or 'none'}", id="log-title")
        yield Log(id="log", max_lines=20_000)
        yield Footer()

    def on_mount(self) -> None:
        log = self.query_one(Log)
        if self.path is None or not self.path.exists():
            log.write_line("this job has no log file on this machine (yet)")
        else:
            self._offset = max(0, self.path.stat().st_size - LOG_TAIL_BYTES)
            self._read_more()
        self.set_interval(0.5, self._read_more)

    def _read_more(self) -> None:
        if self.path is None or not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        if chunk:
            self._offset += len(chunk)
            self.query_one(Log).write(chunk.decode("utf-8", errors="replace"))


class TopApp(App[None]):
    """The dashboard. ``cancel`` is the stop operation (a parameter so other providers' cancel
    can be passed in as they arrive)."""

    TITLE = "runctl top"
    CSS = """
    #jobs { height: 2fr; }
    #charts { height: 5; }
    #charts Vertical { width: 1fr; padding: 0 1; }
    Sparkline { height: 3; }
    #lower { height: 1fr; }
    #lower DataTable { width: 1fr; height: 1fr; }
    .caption { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("r", "refresh_now", "Refresh"),
        Binding("l", "open_log", "Log"),
        Binding("s", "stop_job", "Stop job"),
    ]

    def __init__(
        self,
        ledger: Ledger,
        *,
        interval: float = 2.0,
        heartbeats: HeartbeatSource = ledger_heartbeats,
        cancel: Callable[[Ledger, str], Job] = cancel_job,
    ) -> None:
        super().__init__()
        self.ledger = ledger
        self.interval = interval
        self.heartbeats = heartbeats
        self.cancel = cancel
        self.current: Snapshot | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="charts"):
            with Vertical():
                yield Static(
                    f"spend $/h, last {SERIES_WINDOW_S / 3600:g} h", id="cost-caption", classes="caption"
                )
                yield Sparkline([], id="cost", summary_function=max)
            with Vertical():
                yield Static("GPU %, selected job", id="gpu-caption", classes="caption")
                yield Sparkline([], id="gpu", summary_function=max)
        with Horizontal(id="lower"):
            yield DataTable(id="resources", cursor_type="none")
            yield DataTable(id="events", cursor_type="none")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#jobs", DataTable).add_columns(
            "ID", "NAME", "PROVIDER", "ATT", "STATE", "STEP", "LAST CHECKPOINT", "ELAPSED", "$/H", "$ SO FAR"
        )
        self.query_one("#resources", DataTable).add_columns("RESOURCE", "PROVIDER", "KIND", "STATE", "$/H")
        self.query_one("#events", DataTable).add_columns("TIME", "JOB", "EVENT")
        self.refresh_data()
        self.set_interval(self.interval, self.refresh_data)

    # -- data ----------------------------------------------------------------------------------

    def refresh_data(self) -> None:
        """Re-read the ledger and redraw every table and chart."""
        try:
            snap = snapshot(self.ledger, heartbeats=self.heartbeats)
        except RunctlError as exc:
            self.notify(f"cannot read the ledger: {exc.message}", severity="error")
            return
        self.current = snap
        running = sum(1 for j in snap.jobs if not j.job.is_final)
        self.sub_title = (
            f"{running} running · {usd(snap.rate_usd_per_hour)}/h · {usd(snap.cost_usd)} so far"
        )
        self._fill_jobs(snap)
        self.query_one("#cost", Sparkline).data = snap.spend_rate_series
        resources = self.query_one("#resources", DataTable)
        resources.clear()
        for r in snap.resources:
            rate = usd(r.rate_usd_per_hour)
            resources.add_row(r.id, r.provider, r.kind, r.state, rate)
        events = self.query_one("#events", DataTable)
        events.clear()
        for e in reversed(snap.events):
            events.add_row(time.strftime("%H:%M:%S", time.localtime(e.ts)), e.job_id or "", e.message)
        self._show_gpu()

    def _fill_jobs(self, snap: Snapshot) -> None:
        table = self.query_one("#jobs", DataTable)
        selected = self.selected()
        table.clear()
        for status in snap.jobs:
            job = status.job
            style = "dim" if job.is_final else ""
            cells = (
                job.id,
                job.name,
                job.provider,
                str(job.attempt),
                job.state,
                "" if status.step is None else str(status.step),
                Path(status.last_checkpoint).name if status.last_checkpoint else "",
                duration(status.elapsed_s),
                usd(status.rate_usd_per_hour),
                usd(status.cost_usd),
            )
            table.add_row(*(Text(c, style=style) for c in cells), key=job.id)
        if selected is not None and selected.job.id in {s.job.id for s in snap.jobs}:
            table.move_cursor(row=table.get_row_index(selected.job.id))

    def selected(self) -> JobStatus | None:
        """The job under the cursor, as of the last refresh."""
        table = self.query_one("#jobs", DataTable)
        if self.current is None or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((s for s in self.current.jobs if s.job.id == key), None)

    def _show_gpu(self) -> None:
        status = self.selected()
        values = status.gpu_util if status else []
        self.query_one("#gpu", Sparkline).data = values
        caption = "GPU %, selected job" + ("" if values else ": no heartbeats")
        if values:
            caption += f" (now {values[-1]:.0f}%)"
        self.query_one("#gpu-caption", Static).update(caption)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "jobs":
            self._show_gpu()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "jobs":
            self.action_open_log()

    # -- actions -------------------------------------------------------------------------------

    def action_refresh_now(self) -> None:
        self.refresh_data()

    def action_open_log(self) -> None:
        status = self.selected()
        if status is not None:
            self.push_screen(LogScreen(status.job))

    def action_stop_job(self) -> None:
        status = self.selected()
        if status is None:
            return
        job = status.job
        if job.is_final:
            self.notify(f"job {job.id} already ended ({job.state})", severity="warning")
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.notify(f"stopping job {job.id}: it is saving its checkpoint")
                self._stop(job.id)

        self.push_screen(
            ConfirmScreen(
                f"Stop job {job.id} ({job.name})?\nIt gets SIGTERM, saves its checkpoint and is "
                "recorded as cancelled."
            ),
            answered,
        )

    @work(thread=True, group="stop")
    def _stop(self, job_id: str) -> None:
        try:
            job = self.cancel(self.ledger, job_id)
        except RunctlError as exc:
            self.call_from_thread(self.notify, exc.message, severity="error")
        else:
            self.call_from_thread(self.notify, f"job {job.id}: {job.state}")
        self.call_from_thread(self.refresh_data)
