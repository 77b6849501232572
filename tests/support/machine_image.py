"""A bare machine image for the simulators: Debian bookworm minbase with ``python3`` and CA
certificates — no pip, no runctl — built with ``debootstrap`` from Debian's mirror (no image
can be pulled here) and ``docker import``-ed, once: the image is tagged with a hash of the
recipe, and a tarball of the root filesystem is kept under :data:`CACHE` (a new Docker daemon
imports it again without rebuilding it).

:func:`bare_image` returns the image's tag, or ``None`` when there is no Docker daemon (the
simulator then runs machines on this host, and says so); with ``CI=true`` a missing daemon or a
failed build raises instead, so CI never silently tests less.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

CACHE = Path(os.environ.get("RUNCTL_TEST_IMAGE_CACHE", "/var/cache/runctl-test-images"))
RECIPE = ("debootstrap", "--variant=minbase", "--include=python3,ca-certificates", "bookworm")
MIRROR = "http://deb.debian.org/debian"
_lock = threading.Lock()


def _tag() -> str:
    digest = hashlib.sha256(" ".join((*RECIPE, MIRROR)).encode()).hexdigest()[:12]
    return f"runctl-test-bookworm:{digest}"


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def bare_image() -> str | None:
    """The bare image's tag (built and cached on first use), or ``None`` without Docker."""
    strict = os.environ.get("CI") == "true"
    with _lock:
        if not docker_available():
            if strict:
                raise RuntimeError("CI=true and no Docker daemon: the bare-machine tests need one")
            print("machine simulator: no Docker daemon, machines run on this host", file=sys.stderr)
            return None
        tag = _tag()
        if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
            return tag
        tarball = CACHE / f"{tag.split(':')[1]}.tar"
        if not tarball.exists():
            _build_rootfs(tarball)
        subprocess.run(["docker", "import", str(tarball), tag], check=True, capture_output=True)
        return tag


def _build_rootfs(tarball: Path) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=".rootfs-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run([*RECIPE, str(root), MIRROR], check=True, capture_output=True, timeout=1800)
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            ["tar", "-C", str(root), "--exclude=./proc/*", "--exclude=./sys/*", "-cf", str(partial), "."],
            check=True,
        )
        partial.rename(tarball)


if __name__ == "__main__":
    print(bare_image())
