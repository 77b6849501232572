"""The local side of a transfer: descriptors closed once, positional writes, the read-ahead CRC-32s
of an upload's parts, and the front-to-back MD5 of a download written out of order."""

from __future__ import annotations

import hashlib
import math
import os
import threading
import zlib
from pathlib import Path

from runctl.core.errors import ValidationError
from runctl.storage.transfer.settings import MiB


class OrderedMD5:
    """The MD5 of a file whose ranges are written out of order, computed front to back.

    Range workers call :meth:`ready` as each range lands; a thread hashes every range as soon as
    all before it are there (reading back from the page cache), so hashing overlaps the download.
    """

    def __init__(self, fd: int, size: int, range_size: int) -> None:
        self._fd, self._size, self._range = fd, size, range_size
        self._md5 = hashlib.md5()
        self._ready: set[int] = set()
        self._stopped = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="runctl-s3-md5", daemon=True)
        self._thread.start()

    def ready(self, index: int) -> None:
        with self._cond:
            self._ready.add(index)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()

    def result(self) -> bytes:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._md5.digest()

    def _run(self) -> None:
        try:
            for index in range(math.ceil(self._size / self._range)):
                with self._cond:
                    while index not in self._ready and not self._stopped:
                        self._cond.wait()
                    if self._stopped:
                        return
                position = index * self._range
                end = min(position + self._range, self._size)
                while position < end:
                    chunk = os.pread(self._fd, min(8 * MiB, end - position), position)
                    if not chunk:
                        raise OSError(f"short read at {position}")
                    self._md5.update(chunk)
                    position += len(chunk)
        except BaseException as exc:
            self._error = exc


class Fd:
    """A file descriptor closed exactly once (a second ``os.close`` could hit a reused number)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.fd)


def part_crc32s(fd: int, size: int, part_size: int, path: Path) -> list[int]:
    """The CRC-32 of each ``part_size`` piece of ``fd``, in one pass through one reused buffer."""
    buffer = memoryview(bytearray(min(8 * MiB, part_size)))
    crcs: list[int] = []
    position = 0
    while position < size:
        end, crc = min(position + part_size, size), 0
        while position < end:
            got = os.preadv(fd, [buffer[: min(len(buffer), end - position)]], position)
            if got <= 0:
                raise changed(path)
            crc = zlib.crc32(buffer[:got], crc)
            position += got
        crcs.append(crc)
    return crcs


def pwrite_all(fd: int, data: memoryview, position: int) -> None:
    """Write all of ``data`` at ``position`` (``pwrite`` may write less, e.g. on network file systems)."""
    while data:
        written = os.pwrite(fd, data, position)
        if written <= 0:
            raise OSError(f"could not write at offset {position}")
        data, position = data[written:], position + written


def changed(path: Path) -> ValidationError:
    return ValidationError(
        f"{path} changed while it was being uploaded",
        hint="upload it once it is completely written (publish a checkpoint after it is renamed into place)",
    )
