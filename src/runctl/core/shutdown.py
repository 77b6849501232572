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
5. When the child exits, whatever it left is killed, in its group or not (a daemon that called
   ``setsid``): see :mod:`runctl.core.containment`. Nothing keeps running unseen.
6. A stop that arrived is never lost, whatever the order: a signal or a stop request that came
   while the child was exiting, or after it exited but before :meth:`Supervisor.run` returns, is
   still in the outcome (a shutdown signals the script and runctl at once, and a script that
   saves and exits 0 at once must not look like one that finished). The caller classifies such
   an exit as stopped, never as succeeded.
7. The previous signal handlers are restored; the caller records the outcome
   (:class:`ChildOutcome`) in the ledger, on every path.

**Nothing runs untracked.** The child starts behind a gate: a tiny ``python -I -S`` stub that
waits on a pipe before it execs the command. ``on_start(pid)`` records the pid (and the job's
cgroup takes it) first; only then is the gate opened. If runctl dies in between, the stub reads
EOF and exits without running anything. A command that cannot be executed raises
:class:`StartError` (an ``OSError``), reported back by the stub as ``subprocess`` does.

Output (stdout and stderr merged, unbuffered) is teed to a sink (the terminal) and a log file,
flushed per chunk so ``runctl logs --follow`` sees it live. The tee never stops draining the
child: a log that cannot be written (disk full) is said once on stderr and recorded in
:attr:`ChildOutcome.log_error`, and the job goes on. ``max_log_size`` rotates the log: at that
size it becomes ``<log>.1`` (replacing the previous one) and a new log starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from runctl.core.containment import ProcessTree, enable_subreaper
from runctl.core.errors import StateDirError

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
    log_error: str | None = None  # the log could not be written (disk full): what happened

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
        tree_tag: str | None = None,
        cgroup: Path | None = None,
        max_log_size: int | None = None,
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
        self.tree_tag = tree_tag
        self.cgroup = cgroup
        self.max_log_size = max_log_size
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
        log = _LogSink.open(self.log_path, self.max_log_size)
        tree = ProcessTree(tag=self.tree_tag, cgroup=self.cgroup, reaper=enable_subreaper())
        gate_read, gate_write = os.pipe()  # the child waits on it until it is on record
        error_read, error_write = os.pipe()  # the gate reports a failed exec on it
        try:
            tree.create_cgroup()
            child = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _GATE, str(gate_read), str(error_write), *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                pass_fds=(gate_read, error_write),
            )
        except BaseException:
            for fd in (gate_read, gate_write, error_read, error_write):
                os.close(fd)
            log.close()
            tree.close()
            tree.remove_cgroup()
            raise
        os.close(gate_read)
        os.close(error_write)
        tree.pgid = child.pid
        tee = threading.Thread(target=self._tee, args=(child, log), daemon=True)
        tee.start()
        try:
            tree.enter_cgroup(child.pid)
            if self.on_start:
                self.on_start(child.pid)  # the child is on record before it runs anything
            os.write(gate_write, b"1")
            os.close(gate_write)
            gate_write = -1
            _raise_exec_error(error_read, self.argv[0])
            outcome = self._supervise(child)
        finally:
            if gate_write >= 0:
                os.close(gate_write)  # the gate sees EOF: the script never runs
            os.close(error_read)
            tree.kill_all()  # leftovers, wherever they went, or everything if we failed
            child.wait()
            tree.reap()
            tree.close()
            tree.remove_cgroup()
            tee.join(timeout=5)
            log.close()
        if log.error:
            return dataclasses.replace(outcome, log_error=log.error)
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

    def _tee(self, child: subprocess.Popen[bytes], log: _LogSink) -> None:
        """Copy the child's output to the log and the terminal; never stop draining it (a
        child blocked on a full pipe would hang the job), whatever fails on the way."""
        assert child.stdout is not None
        fd = child.stdout.fileno()
        while chunk := os.read(fd, 65536):
            log.write(chunk)
            if self.echo:
                try:
                    self.echo.write(chunk)
                    self.echo.flush()
                except (BrokenPipeError, ValueError):
                    self.echo = None  # the terminal went away; keep logging to the file
        child.stdout.close()


class StartError(OSError):
    """The command could not be executed (no such file, no interpreter, not executable)."""


def _raise_exec_error(error_read: int, program: str) -> None:
    """Wait until the gate has exec'd the command (its end of the pipe closes), or raise why not."""
    report = b""
    while chunk := os.read(error_read, 64):
        report += chunk
    if report:
        code = int(report)
        raise StartError(code, os.strerror(code), program)


#: Runs first in the child (``python -I -S -c``): waits until runctl has recorded it, then execs
#: the command. EOF on the gate means runctl died first: the command never runs.
_GATE = """
import os, sys
gate, error = int(sys.argv[1]), int(sys.argv[2])
if os.read(gate, 1) != b"1":
    os._exit(125)
os.close(gate)
os.set_inheritable(error, False)
try:
    os.execvp(sys.argv[3], sys.argv[3:])
except OSError as exc:
    os.write(error, str(exc.errno or 8).encode())
    os._exit(127)
"""


class _LogSink:
    """The job's log file: flushed per chunk, rotated at ``max_size`` (one ``.1`` kept), and
    given up on (said once on stderr, recorded in the outcome) when it cannot be written."""

    def __init__(self, path: Path | None, handle: BinaryIO | None, max_size: int | None) -> None:
        self.path = path
        self.handle = handle
        self.max_size = max_size
        self.size = handle.tell() if handle else 0
        self.error: str | None = None

    @classmethod
    def open(cls, path: Path | None, max_size: int | None) -> _LogSink:
        if path is None:
            return cls(None, None, max_size)
        try:
            return cls(path, path.open("ab"), max_size)
        except OSError as exc:
            raise StateDirError(
                f"cannot open the job's log {path}: {exc.strerror or exc}",
                hint=f"free space or fix the permissions of {path.parent}, or set "
                "RUNCTL_STATE_DIR to another directory",
            ) from exc

    def write(self, chunk: bytes) -> None:
        if self.handle is None or self.path is None:
            return
        try:
            if self.max_size is not None and self.size and self.size + len(chunk) > self.max_size:
                self.handle.close()
                self.path.replace(self.path.with_name(self.path.name + ".1"))
                self.handle = self.path.open("ab")
                self.size = 0
            self.handle.write(chunk)
            self.handle.flush()
            self.size += len(chunk)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            self.error = f"its log {self.path} could not be written: {reason}"
            _message(
                f"the job's log {self.path} could not be written ({reason}): its output is no "
                "longer saved; the job goes on"
            )
            with contextlib.suppress(OSError):
                self.handle.close()
            self.handle = None

    def close(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
            self.handle = None


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
