"""Graceful shutdown: run a child in its own process group and stop it without losing its work.

:class:`Supervisor` runs one command and owns runctl's SIGINT/SIGTERM while it does:

1. The child starts in a new session (its own process group), so a Ctrl-C on the terminal
   reaches runctl only, and runctl decides what the child gets.
2. The first SIGINT, SIGTERM or SIGHUP (the terminal closed), the max duration passing, or
   :meth:`Supervisor.request_stop` (a spot notice) sends SIGTERM to the child's whole group and
   starts the grace period (default 30 s): a script that checkpoints on SIGTERM (see
   ``runctl.Checkpointer``) saves and exits.
3. When the grace period runs out the group gets SIGKILL, and the outcome says so.
4. A second Ctrl-C (or second SIGTERM) during the grace period kills the group at once, and
   says so on stderr.
5. When the child exits, whatever it left in its group is killed: nothing keeps running unseen.
6. A stop that arrived is never lost, whatever the order: a signal or a stop request that came
   while the child was exiting, or after it exited but before :meth:`Supervisor.run` returns, is
   still in the outcome (a shutdown signals the script and runctl at once, and a script that
   saves and exits 0 at once must not look like one that finished). The caller classifies such
   an exit as stopped, never as succeeded.
7. The previous signal handlers are restored; the caller records the outcome
   (:class:`ChildOutcome`) in the ledger, on every path.

Output (stdout and stderr merged, unbuffered) is teed to a sink (the terminal) and a log file,
flushed per chunk so ``runctl logs --follow`` sees it live.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import BinaryIO

POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class ChildOutcome:
    """How the child ended and why."""

    returncode: int
    signal_received: int | None = None  # SIGINT/SIGTERM that runctl itself received
    timed_out: bool = False  # the max duration passed
    killed: str | None = None  # why SIGKILL was needed, if it was
    pid: int = 0
    stop_reason: str | None = None  # a stop asked through request_stop() (e.g. a spot notice)

    @property
    def stopped_by_request(self) -> bool:
        return self.signal_received is not None or self.timed_out or self.stop_reason is not None

    @property
    def exit_detail(self) -> str:
        """How the child itself ended, for an outcome's detail: ``exit code 0``, ``killed by …``."""
        how = (
            f"exit code {self.returncode}"
            if self.returncode >= 0
            else f"killed by {signal.Signals(-self.returncode).name}"
        )
        return f"{how}; {self.killed}" if self.killed else how


def _message(text: str) -> None:
    from runctl.core import logs

    if logs.is_configured():  # the CLI: in the chosen log format
        logging.getLogger("runctl.shutdown").warning(text)
        return
    sys.stderr.write(f"runctl: {text}\n")
    sys.stderr.flush()


class Supervisor:
    """Runs one command under graceful-shutdown rules (see module docstring)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        grace_period: float = 30.0,
        max_duration: float | None = None,
        log_path: Path | None = None,
        echo: BinaryIO | None = None,
        on_start: Callable[[int], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        tick_interval: float = 5.0,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.grace_period = grace_period
        self.max_duration = max_duration
        self.log_path = log_path
        self.echo = echo
        self.on_start = on_start
        self.on_tick = on_tick
        self.tick_interval = tick_interval
        self._signals: list[int] = []
        self._stop_requests: list[tuple[str, float | None]] = []

    def request_stop(self, reason: str, *, grace_period: float | None = None) -> None:
        """Ask, from any thread, for the graceful stop a first SIGTERM would start.

        ``grace_period`` shortens the wait (a spot notice leaves two minutes, not thirty).
        """
        self._stop_requests.append((reason, grace_period))

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)

    def run(self) -> ChildOutcome:
        """Start the child, supervise it until it exits, return how it ended."""
        in_main = threading.current_thread() is threading.main_thread()
        previous = {}
        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            return self._with_late_stop(self._run())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> ChildOutcome:
        log = self.log_path.open("ab") if self.log_path else None
        try:
            child = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except BaseException:
            if log:
                log.close()
            raise
        tee = threading.Thread(target=self._tee, args=(child, log), daemon=True)
        tee.start()
        try:
            if self.on_start:
                self.on_start(child.pid)
            outcome = self._supervise(child)
        finally:
            _kill_group(child.pid, signal.SIGKILL)  # leftovers, or everything if we failed
            child.wait()
            tee.join(timeout=5)
            if log:
                log.close()
        return outcome

    def _supervise(self, child: subprocess.Popen[bytes]) -> ChildOutcome:
        started = time.monotonic()
        next_tick = started + self.tick_interval
        stop_deadline: float | None = None
        received: int | None = None
        timed_out = False
        killed: str | None = None
        stop_reason: str | None = None
        seen = 0
        while (returncode := child.poll()) is None:
            now = time.monotonic()
            if self._stop_requests and stop_deadline is None:
                stop_reason, grace = self._stop_requests[0]
                _message(f"{stop_reason}: asking the job to stop (SIGTERM)")
                stop_deadline = self._request_stop(child, now)
                if grace is not None:
                    stop_deadline = min(stop_deadline, now + grace)
            new_signals = self._signals[seen:]
            seen += len(new_signals)
            for signum in new_signals:
                name = signal.Signals(signum).name
                if stop_deadline is None:
                    received = signum
                    _message(
                        f"received {name}: asking the job to stop (SIGTERM) and waiting up to "
                        f"{self.grace_period:g}s for it to save; press Ctrl-C again to kill it now"
                    )
                    stop_deadline = self._request_stop(child, now)
                elif killed is None:
                    killed = f"second {name}: killed at once"
                    _message(f"{killed} (its last checkpoint may be incomplete)")
                    _kill_group(child.pid, signal.SIGKILL)
            if self.max_duration is not None and stop_deadline is None and now - started >= self.max_duration:
                timed_out = True
                _message(f"max duration {self.max_duration:g}s reached: stopping the job")
                stop_deadline = self._request_stop(child, now)
            if stop_deadline is not None and killed is None and now >= stop_deadline:
                killed = f"did not exit within the {self.grace_period:g}s grace period after SIGTERM"
                _message(f"job {killed}: killed (SIGKILL)")
                _kill_group(child.pid, signal.SIGKILL)
            if self.on_tick and now >= next_tick:
                next_tick = now + self.tick_interval
                self.on_tick()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=POLL_INTERVAL_S)  # returns as soon as the child exits
        return ChildOutcome(
            returncode=returncode,
            signal_received=received,
            timed_out=timed_out,
            killed=killed,
            pid=child.pid,
            stop_reason=stop_reason,
        )

    def _with_late_stop(self, outcome: ChildOutcome) -> ChildOutcome:
        """``outcome`` with the first signal or stop request that the loop did not see because the
        child exited first (the handlers are still ours: everything that arrived is in the lists)."""
        if outcome.stopped_by_request:
            return outcome
        if self._signals:
            name = signal.Signals(self._signals[0]).name
            _message(f"received {name} as the job exited: recorded as a stop, not a finish")
            return replace(outcome, signal_received=self._signals[0])
        if self._stop_requests:
            return replace(outcome, stop_reason=self._stop_requests[0][0])
        return outcome

    def _request_stop(self, child: subprocess.Popen[bytes], now: float) -> float:
        _kill_group(child.pid, signal.SIGTERM)
        return now + self.grace_period

    def _tee(self, child: subprocess.Popen[bytes], log: BinaryIO | None) -> None:
        assert child.stdout is not None
        fd = child.stdout.fileno()
        while chunk := os.read(fd, 65536):
            if log:
                log.write(chunk)
                log.flush()
            if self.echo:
                try:
                    self.echo.write(chunk)
                    self.echo.flush()
                except (BrokenPipeError, ValueError):
                    self.echo = None  # the terminal went away; keep logging to the file
        child.stdout.close()


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid exists on this machine (and is not a zombie)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True
