"""The automatic environment of a job (``--deps auto``): the project's own dependencies, built
on the machine, so that a bare image can run the user's script.

In this order, the first that applies:

1. the script carries PEP 723 inline metadata → ``uv run --script`` (:mod:`runctl.agent.script`;
   uv is the one on ``PATH`` or the shipped agent's own);
2. ``requirements.txt``, else ``pyproject.toml``, in the code directory → a virtualenv built from
   it and cached on the machine under ``~/.runctl/envs/<hash>`` (the hash of that file and the
   Python version: a restart, a resumed attempt or the next job with the same file reuse it).
   uv builds it when there is one (``uv venv`` + ``uv pip install``), else ``python -m venv``
   and pip, with the machine's own index settings (``PIP_INDEX_URL``… may come with ``--env``);
3. nothing to install → the agent's interpreter.

The build's output goes into the job log; it is bounded by ``[remote] setup_timeout`` and a
failure ends the attempt ``failed_setup`` (:func:`runctl.agent.setup.run_step`). Under
``runctl local`` the automatic environment is opt-in (``--deps auto``): a local project usually
runs in the user's environment already.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from runctl.agent.script import find_uv, has_inline_metadata
from runctl.agent.setup import run_step

Deps = Literal["auto", "none"]
DEPS: tuple[Deps, ...] = ("auto", "none")


def project_python(
    code: Path,
    script: Path,
    *,
    log_path: Path,
    timeout: float,
    env: Mapping[str, str],
    log_hint: str | None = None,
) -> tuple[str | None, float | None]:
    """The interpreter the project's dependencies are installed in (``None``: the agent's own or
    uv's), and how long building it took (``None``: nothing built)."""
    if script.suffix == ".py" and script.is_file() and has_inline_metadata(script):
        return None, None
    names = ("requirements.txt", "pyproject.toml")
    spec = next((code / name for name in names if (code / name).is_file()), None)
    if spec is None:
        return None, None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha256(spec.name.encode() + spec.read_bytes() + version.encode()).hexdigest()[:20]
    venv = Path.home() / ".runctl" / "envs" / digest
    python = venv / "bin" / "python"
    if (venv / ".runctl-complete").exists():
        return str(python), None
    shutil.rmtree(venv, ignore_errors=True)
    install = f"-r {_q(spec)}" if spec.name == "requirements.txt" else _q(code)
    uv = find_uv()
    if uv is not None:
        command = (
            f"{_q(Path(uv))} venv --quiet --python {_q(Path(sys.executable))} {_q(venv)} && "
            f"{_q(Path(uv))} pip install --python {_q(python)} {install}"
        )
    else:
        command = (
            f"{_q(Path(sys.executable))} -m venv {_q(venv)} && "
            f"{_q(python)} -m pip install --disable-pip-version-check {install}"
        )
    took = run_step(
        command,
        what=f"dependencies ({spec.name})",
        cwd=code,
        log_path=log_path,
        timeout=timeout,
        env=env,
        log_hint=log_hint,
    )
    (venv / ".runctl-complete").touch()
    return str(python), took


def _q(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))
