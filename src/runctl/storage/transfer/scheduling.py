"""Scheduling: many transfer tasks on a bounded thread pool, cancelled together, cleaned up always.

A call (upload or download of many files) is one :class:`Batch`. Its tasks (a small object, a
part, a range) are pulled lazily by :func:`run_tasks`, at most ``limit`` at once; the first
failure (Ctrl-C included) cancels the rest at their next chunk, and every cleanup the tasks
registered (abort a multipart upload, delete a temp file, close a descriptor) runs at the end,
whatever happened. A multi-task job keeps its state in an object with fields
(:class:`~runctl.storage.transfer.upload.MultipartUpload`,
:class:`~runctl.storage.transfer.download.RangedDownload`) whose last task finishes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from runctl.core.errors import RunctlError
from runctl.storage.base import ProgressFn


class Cancelled(RunctlError):
    """Another task failed (or Ctrl-C): this one stops at its next chunk."""


@dataclass
class Batch:
    """Shared state of one upload or download call."""

    progress: ProgressFn | None
    cancel: threading.Event = field(default_factory=threading.Event)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def advance(self, n: int) -> None:
        if self.progress is not None and n:
            self.progress(n)

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("transfer cancelled")

    def on_exit(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when the call ends, however it ends (it must be idempotent)."""
        with self.lock:
            self.cleanups.append(cleanup)


def run_tasks(batch: Batch, tasks: Iterator[Callable[[], None]], limit: int) -> None:
    """Run ``tasks`` with at most ``limit`` at once; the first failure cancels all.

    Tasks are pulled lazily (a multipart upload is started only when its parts are next),
    and on any failure, Ctrl-C included, every cleanup (abort upload, delete temp) runs.
    """
    pending: set[Future[None]] = set()
    executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="runctl-s3")
    try:
        for task in tasks:
            while len(pending) >= limit * 2:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                _raise_first(done)
            pending.add(executor.submit(task))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            _raise_first(done)
    except BaseException:
        batch.cancel.set()
        for future in pending:
            future.cancel()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        for cleanup in batch.cleanups:  # idempotent: after success they only close handles
            cleanup()


def _raise_first(done: set[Future[None]]) -> None:
    for future in done:
        exc = future.exception()
        if exc is not None and not isinstance(exc, Cancelled):
            raise exc
