"""``runctl local --python / --setup / --deps auto``: the user's environment for a local run.

The same steps as on a remote machine (:mod:`runctl.agent.setup`, :mod:`runctl.agent.deps`),
with two local decisions: ``--setup`` runs before *every* local run (a laptop is not a fresh
machine whose setup one marker can remember), and the automatic environment is opt-in
(``--deps auto``; a local project usually runs in the user's own environment already). Both run
before the job is recorded, with their output in ``<state dir>/logs/<name>.setup.log``: a
failure (exit code 80, the last lines in the message) leaves the ledger as it was. The project
is the current directory. ``[remote] setup_timeout`` bounds them here too.
"""

from __future__ import annotations

import os
from pathlib import Path

from runctl.agent.deps import project_python
from runctl.agent.setup import run_setup
from runctl.core.config import Config
from runctl.core.paths import create_private_file, ensure_dir, ensure_state_dir


def prepared_config(
    config: Config, script: Path, *, python: str | None, setup: str | None, deps: str
) -> Config:
    """``config`` with ``[local] python`` set to the interpreter the run should use, after the
    setup command or the automatic environment has run."""
    if setup is None and deps != "auto":
        return config if python is None else _with_python(config, python)
    log_dir = ensure_dir(ensure_state_dir() / "logs", what="log directory")
    log_path = log_dir / f"{script.stem}.setup.log"
    if not log_path.exists():
        create_private_file(log_path)
    hint = f"its whole output is in {log_path}"
    timeout = config.remote.setup_timeout
    env = dict(os.environ)
    if setup is not None:
        run_setup(
            setup, cwd=Path.cwd(), log_path=log_path, timeout=timeout, env=env, once=False, log_hint=hint
        )
    elif python is None:
        python, _ = project_python(
            Path.cwd(), script, log_path=log_path, timeout=timeout, env=env, log_hint=hint
        )
    return config if python is None else _with_python(config, python)


def _with_python(config: Config, python: str) -> Config:
    return config.model_copy(update={"local": config.local.model_copy(update={"python": python})})
