"""Process containment: find and stop every process of a job, however it left its group.

A training script runs as the leader of its own process group, but its children can leave the
group (``setsid``, ``setpgid``, a daemon's double fork). :class:`ProcessTree` finds them with
four nets, widest last, and stops them all:

1. **The process group**: everything that stayed in it.
2. **The job's tag**: every process runctl starts carries ``RUNCTL_JOB_ID=<job>`` in its
   environment and its descendants inherit it; ``/proc/*/environ`` is scanned for it. The
   kernel keeps each process's initial environment, so this still works after runctl itself
   died (an orphan stopped by a later ``runctl jobs list``); a pid reused by another program
   never carries the tag, so it is never touched.
3. **A child subreaper** (``prctl(PR_SET_CHILD_SUBREAPER)``, set by the supervising runctl): a
   descendant whose parent exits is re-parented to runctl instead of init, so one that also
   cleared its environment is still found (a child of runctl that is not the script) and is
   reaped after it is killed. This is the default: it needs no privilege and no setup.
4. **A cgroup v2 per job** when ``[local] cgroup_root`` names a delegated cgroup2 directory:
   the child is moved into ``<cgroup_root>/runctl-<job>`` before it runs any code (it waits
   behind a gate until then), no descendant can leave it, and stopping is ``cgroup.kill``
   (SIGKILL to every pid in ``cgroup.procs`` on kernels before 5.14). The directory is removed
   once empty.

After runctl itself was killed with SIGKILL, nets 1, 2 and 4 still work; a descendant that both
left the group and cleared its environment is then out of reach without a cgroup (it was
re-parented to init): that is what ``cgroup_root`` is for.

Decisions: a graceful stop (SIGTERM, grace period) goes to the process group only, as before:
that is the script and its workers, which save; whatever is left of the tree after the script
has exited, or after the grace period, is SIGKILLed, on success as on failure or cancel, since
nothing may keep running unseen. The subreaper flag stays set for the life of the runctl
process (it cannot be given back safely while re-parented processes exist). A process
re-parented to runctl is the job's when it is in the script's session, or in a session of its
own while runctl supervises only this job; runctl's own children (its session) and another
supervised job's never are, so a program that embeds runctl keeps its other children.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runctl.core.errors import ConfigError

PR_SET_CHILD_SUBREAPER = 36
_ACTIVE: list[ProcessTree] = []  # the trees this process supervises now (subreaper net)
_ACTIVE_LOCK = threading.Lock()
CGROUP_PREFIX = "runctl-"
KILL_TIMEOUT_S = 10.0


def enable_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    pgrp: int
    session: int
    zombie: bool


def _processes() -> Iterable[_Proc]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield _Proc(int(name), int(fields[1]), int(fields[2]), int(fields[3]), fields[0] == b"Z")


def _carries(pid: int, tag: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return tag in handle.read().split(b"\0")
    except OSError:
        return False


def tagged_pids(tag: str) -> set[int]:
    """Live processes (not zombies) whose environment holds ``tag`` (``NAME=VALUE``)."""
    me = os.getpid()
    encoded = tag.encode()
    return {p.pid for p in _processes() if not p.zombie and p.pid != me and _carries(p.pid, encoded)}


def check_cgroup_root(root: Path) -> Path:
    """``[local] cgroup_root`` must be a writable directory of a cgroup v2 hierarchy."""
    if not (root / "cgroup.procs").is_file() or not (root / "cgroup.events").is_file():
        raise ConfigError(
            f"[local] cgroup_root {root} is not a cgroup v2 directory",
            key="local.cgroup_root",
            hint="give a directory of a cgroup2 mount (e.g. /sys/fs/cgroup/<delegated>), or "
            "remove the key to contain jobs with a subreaper instead",
        )
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(
            f"[local] cgroup_root {root} is not writable by this user",
            key="local.cgroup_root",
            hint="delegate it to this user (chown the directory and its cgroup.procs), or remove the key",
        )
    return root


@dataclass(eq=False)
class ProcessTree:
    """Every process of one job (see the module docstring).

    ``pgid`` is the script's process group (its pid), once known; ``tag`` the environment entry
    every process of the job carries; ``cgroup`` the job's own cgroup, if it has one;
    ``reaper`` whether this process is the subreaper of the tree (it runs the script).
    """

    pgid: int | None = None
    tag: str | None = None
    cgroup: Path | None = None
    reaper: bool = False
    _not_ours: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.reaper:  # children this process already had belong to someone else
            me = os.getpid()
            self._not_ours = {p.pid for p in _processes() if p.ppid == me}
            with _ACTIVE_LOCK:
                _ACTIVE.append(self)

    def close(self) -> None:
        """The job is over: stop counting this process's re-parented children as its."""
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)

    def _reparented(self, proc: _Proc, me: int) -> bool:
        """Whether a child of this (subreaper) process is a descendant of the job's script.

        Never one of this process's own children (same session), nor one of another job's
        supervised by this process at the same time (its script's session); a daemon in a session
        of its own is the job's only when this is the one job this process supervises (a library
        user running two at once relies on the tag and the cgroup for those).
        """
        if not self.reaper or proc.ppid != me or proc.pid in self._not_ours or proc.pid == self.pgid:
            return False
        if proc.session == self.pgid:
            return True
        with _ACTIVE_LOCK:
            others = [tree.pgid for tree in _ACTIVE if tree is not self]
        if proc.session == os.getsid(0) or proc.session in others or proc.pid in others:
            return False
        return not others

    # -- the cgroup ------------------------------------------------------------------------------

    def create_cgroup(self) -> None:
        if self.cgroup is not None:
            check_cgroup_root(self.cgroup.parent)
            self.cgroup.mkdir(exist_ok=True)

    def enter_cgroup(self, pid: int) -> None:
        """Move ``pid`` (the gated child, before it runs anything) into the job's cgroup."""
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text(f"{pid}\n")

    def remove_cgroup(self) -> None:
        """Remove the job's cgroup once it is empty (best effort: a stuck one stays listed)."""
        if self.cgroup is None or not self.cgroup.exists():
            return
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while True:
            try:
                self.cgroup.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    return
                time.sleep(0.02)

    def _cgroup_pids(self) -> set[int]:
        if self.cgroup is None:
            return set()
        try:
            return {int(line) for line in (self.cgroup / "cgroup.procs").read_text().split()}
        except OSError:
            return set()

    # -- members ---------------------------------------------------------------------------------

    def members(self) -> set[int]:
        """The live processes of the tree (zombies excluded)."""
        me = os.getpid()
        tag = self.tag.encode() if self.tag else None
        group = self.pgid if self.pgid is not None and self._group_is_ours() else None
        found = set()
        for proc in _processes():
            if proc.zombie or proc.pid == me:
                continue
            if (
                proc.pgrp == group
                or self._reparented(proc, me)
                or (tag is not None and _carries(proc.pid, tag))
            ):
                found.add(proc.pid)
        return found | self._cgroup_pids()

    def _group_is_ours(self) -> bool:
        """Whether the whole process group is the job's: this process started its leader, or
        the leader still carries the job's tag (a reused pid never does)."""
        if self.reaper or self.tag is None:
            return True
        return self.pgid is not None and _carries(self.pgid, self.tag.encode())

    def _group(self) -> list[_Proc]:
        """The live members of the script's group that are the job's."""
        if self.pgid is None:
            return []
        whole = self._group_is_ours()
        tag = (self.tag or "").encode()
        return [
            p
            for p in _processes()
            if p.pgrp == self.pgid and not p.zombie and (whole or _carries(p.pid, tag))
        ]

    def group_alive(self) -> bool:
        """Whether a live member of the script's process group remains."""
        return bool(self._group())

    # -- stopping --------------------------------------------------------------------------------

    def terminate_group(self) -> None:
        """SIGTERM to the script's process group (its members that are the job's)."""
        if self.pgid is not None and self._group_is_ours():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGTERM)
            return
        for proc in self._group():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGTERM)

    def stop(self, grace: float) -> set[int]:
        """Stop the tree as its runner would: SIGTERM to the group, up to ``grace`` seconds for
        it to save and exit, then SIGKILL to everything left. Returns the survivors (none)."""
        self.terminate_group()
        deadline = time.monotonic() + grace
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.kill_all()

    def kill_all(self, timeout: float = KILL_TIMEOUT_S) -> set[int]:
        """SIGKILL every member until none is left (a forking tree may need several rounds);
        reaps what was re-parented to us. Returns the pids still alive after ``timeout``."""
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                (self.cgroup / "cgroup.kill").write_text("1\n")
        deadline = time.monotonic() + timeout
        while True:
            if self.pgid is not None and self._group_is_ours():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pgid, signal.SIGKILL)
            alive = self.members()
            for pid in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            self.reap()
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.02)

    def reap(self) -> None:
        """Collect the exit status of re-parented descendants that ended (no zombies left).

        Only those pids, one by one: the script itself is waited for by its ``Popen``.
        """
        me = os.getpid()
        for proc in _processes():
            if proc.zombie and self._reparented(proc, me):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc.pid, os.WNOHANG)
