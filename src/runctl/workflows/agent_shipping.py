"""Shipping the agent: the exact runctl the controller runs, onto a machine that has none.

A real cloud image has no runctl, often no pip, and maybe an old Python; and installing
``runctl`` by name from a public index would run whatever someone published under that name
with the machine's instance role (dependency confusion). So the controller ships its own:

1. **The wheel** of the runctl it is running: built from the source tree (``pip wheel
   --no-deps``) when runctl is installed editable, else repacked from the installed
   distribution's files. **The wheelhouse**: runctl's runtime dependencies, ``pip``
   (the machine may have none) and ``uv`` (a static binary: it gets a managed CPython where the
   image's is older than 3.11), downloaded as binary wheels for every ``[remote]
   agent_platforms`` × ``agent_python_versions`` (``host``: this machine's platform and Python
   only, without uv — for tests and images built like this machine). Both are cached under
   ``[remote] agent_cache_dir`` per version, content hash of the package and target list.
2. **Storage**: each file goes once, content-addressed, to ``<storage root>/agent/<sha256>/<name>``
   (25 MB per job would otherwise be re-uploaded for every job); the job gets a manifest,
   ``<job>/agent/manifest-<attempt>.txt``: one line per file (``file SHA256 NAME URL``), the
   requirement to install, a cache key, and a URL to report a failed bootstrap as the attempt's
   ``status.json``.
3. **The start command** carries only the manifest's presigned URL and its SHA-256
   (:data:`MANIFEST_URL_ENV`, :data:`MANIFEST_SHA_ENV`). The start script
   (``templates/agent_start.sh``, POSIX sh) downloads with curl, wget or Python's urllib,
   checks the manifest against the pinned SHA-256 and every file against the manifest before
   pip sees it, and installs with ``--no-index --find-links`` into the agent's own virtualenv
   (cached on the machine by the wheelhouse key). A mismatch ends the attempt ``failed_setup``
   at once (reported through the status URL) and nothing else runs.

Why presigned URLs may appear in the SSM command history: they are time-limited (the
attempt's start window, :func:`url_lifetime`) capabilities to *read* runctl's own public code
and this attempt's manifest, and to *write* this attempt's ``status.json`` (at worst a reader
of the history could mark the attempt failed). No secret travels that way: the job's
variables and secrets are read by the agent with its own storage credentials.

``[remote] agent_source = "preinstalled"`` uses a ``runctl`` already on the image (a
pre-provisioned image, the test simulators); ``"pip:REQUIREMENT"`` installs by name from the
machine's index, only when the user says so.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from runctl.agent.sync import STATUS_KEY
from runctl.core.config import RemoteConfig
from runctl.core.errors import ResourceError
from runctl.core.paths import state_dir
from runctl.storage import Storage

MANIFEST_URL_ENV = "RUNCTL_AGENT_MANIFEST_URL"
MANIFEST_SHA_ENV = "RUNCTL_AGENT_MANIFEST_SHA256"
SOURCE_ENV = "RUNCTL_AGENT_SOURCE"
DETACH_ENV = "RUNCTL_AGENT_DETACH"
MIRROR_ENV = "RUNCTL_PYTHON_MIRROR"
HOST = "host"
FILES_PREFIX = "agent"
_INDEX_FILE = "wheelhouse.json"


def start_script() -> str:
    """The POSIX sh start script every provider runs (see the module docstring)."""
    return resources.files("runctl").joinpath("templates/agent_start.sh").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Wheelhouse:
    """The agent's wheel and its dependencies, in a local directory, with their SHA-256s."""

    directory: Path
    requirement: str  # what pip installs on the machine: runctl==<version>
    files: tuple[tuple[str, str], ...]  # (file name, sha256)

    @property
    def key(self) -> str:
        """One name for this exact set of files (the machine caches its virtualenv by it)."""
        listing = "\n".join(f"{sha} {name}" for name, sha in self.files)
        return hashlib.sha256(listing.encode()).hexdigest()[:20]


def wheelhouse(remote: RemoteConfig) -> Wheelhouse:
    """The cached wheelhouse of the running runctl for ``remote``'s targets; built if missing."""
    dist = metadata.distribution("runctl")
    targets = _targets(remote)
    digest = hashlib.sha256(f"{_package_hash(dist)} {targets}".encode()).hexdigest()[:16]
    cache = remote.agent_cache_dir or state_dir() / "agent-cache"
    directory = cache / f"runctl-{dist.version}-{digest}"
    if not (directory / _INDEX_FILE).exists():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=cache))
        try:
            _build(dist, remote, staging)
            with contextlib.suppress(OSError):  # another controller built it first: use theirs
                staging.rename(directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    index = json.loads((directory / _INDEX_FILE).read_text())
    return Wheelhouse(directory, index["requirement"], tuple((n, s) for n, s in index["files"]))


def url_lifetime(remote: RemoteConfig) -> int:
    """Seconds a presigned URL of a start command stays valid: the agent's start window plus an
    hour (SSM registration, a slow pod pull), at most S3's 7 days."""
    return int(min(remote.agent_start_timeout + 3600, 7 * 24 * 3600))


def publish(house: Wheelhouse, root: Storage, job: Storage, *, attempt: int, expires: int) -> dict[str, str]:
    """Upload what the storage lacks, write the attempt's manifest; the start command's env."""
    lines = [
        "# runctl agent manifest v1",
        f"key {house.key}",
        f"requirement {house.requirement}",
        f"report {attempt} {_presign(job, STATUS_KEY, expires, method='put')}",
    ]
    for name, sha in house.files:
        key = f"{FILES_PREFIX}/{sha}/{name}"
        if root.stat(key) is None:
            root.put_file(key, house.directory / name)
        lines.append(f"file {sha} {name} {_presign(root, key, expires)}")
    text = ("\n".join(lines) + "\n").encode()
    manifest_key = f"{FILES_PREFIX}/manifest-{attempt}.txt"
    job.put_bytes(manifest_key, text, content_type="text/plain")
    return {
        MANIFEST_URL_ENV: _presign(job, manifest_key, expires),
        MANIFEST_SHA_ENV: hashlib.sha256(text).hexdigest(),
    }


def _presign(storage: Storage, key: str, expires: int, *, method: str = "get") -> str:
    presign = getattr(storage, "presign", None)
    if presign is None:
        raise ResourceError(
            f"storage {storage.url} cannot hand out URLs to a machine",
            hint="remote jobs need S3 (or S3-compatible) storage: set [storage] uri = 's3://…'",
        )
    return str(presign(key, expires=expires, method=method))


def _targets(remote: RemoteConfig) -> str:
    if HOST in remote.agent_platforms:
        return f"{HOST} cp{sys.version_info.major}{sys.version_info.minor}"
    return " ".join(sorted(remote.agent_platforms)) + " / " + " ".join(sorted(remote.agent_python_versions))


def _package_hash(dist: metadata.Distribution) -> str:
    """The content of the runctl package itself (an editable install changes without a new
    version: the hash tells the builds apart)."""
    package = Path(str(dist.locate_file("runctl")))
    if not package.is_dir():  # editable: the import system knows where the source is
        import runctl

        package = Path(runctl.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _source_tree(dist: metadata.Distribution) -> Path | None:
    """The project directory of an editable install, else ``None``."""
    raw = dist.read_text("direct_url.json")
    if not raw:
        return None
    info = json.loads(raw)
    url = str(info.get("url", ""))
    if info.get("dir_info", {}).get("editable") and url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    return None


def _build(dist: metadata.Distribution, remote: RemoteConfig, out: Path) -> None:
    source = _source_tree(dist)
    if source is not None:
        # the build backend of this environment when it has one: no index needed for it
        no_isolation = ["--no-build-isolation"] if _has_module("setuptools") else []
        _pip("wheel", "--no-deps", *no_isolation, "--wheel-dir", str(out), str(source))
    else:
        _repack(dist, out)
    requirements = [r for r in (dist.requires or []) if "extra ==" not in r]
    if HOST in remote.agent_platforms:
        _pip("download", "--only-binary=:all:", "--dest", str(out), *requirements, "pip")
    else:
        for platform in remote.agent_platforms:
            for version in remote.agent_python_versions:
                _pip(
                    "download", "--only-binary=:all:", "--dest", str(out), "--platform", platform,
                    "--python-version", version, "--implementation", "cp", *requirements, "pip", "uv",
                )
    files = sorted(p for p in out.iterdir() if p.suffix == ".whl")
    index = {
        "requirement": f"runctl=={dist.version}",
        "files": [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files],
    }
    (out / _INDEX_FILE).write_text(json.dumps(index, indent=1))


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--quiet", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise ResourceError(
            f"could not build the agent's wheelhouse (pip {args[0]}): {tail}",
            operation="ship the agent",
            hint="check this machine's package index settings, or set [remote] agent_source",
        )


def _repack(dist: metadata.Distribution, out: Path) -> None:
    """A wheel of an installed (non-editable) runctl, from the files its RECORD lists."""
    tag = "py3-none-any"
    wheel = out / f"runctl-{dist.version}-{tag}.whl"
    record_lines = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        record_name = ""
        for entry in dist.files or []:
            name = str(entry)
            if name.startswith("..") or "__pycache__" in name:
                continue
            if name.endswith(".dist-info/RECORD"):
                record_name = name
                continue
            data = Path(str(dist.locate_file(entry))).read_bytes()
            archive.writestr(name, data)
            digest = hashlib.sha256(data).digest()
            encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            record_lines.append(f"{name},sha256={encoded},{len(data)}")
        if record_name:
            archive.writestr(record_name, "\n".join([*record_lines, f"{record_name},,"]) + "\n")
