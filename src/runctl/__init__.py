"""runctl: run ML training jobs locally, on AWS EC2 and on RunPod.

The library API is the CLI without the rendering. Names are imported on first use, so a
training script's ``from runctl import Checkpointer`` stays stdlib-only and ``runctl --help``
stays fast:

* ``Checkpointer`` — atomic save, keep-last-N, ``latest()``, ``stop_requested``;
* ``load_config``, ``Config`` — validated configuration;
* ``Ledger`` — the SQLite record of jobs, resources, usage and events;
* ``LocalRun``, ``run_local`` — run a script locally under graceful shutdown;
* ``RetryPolicy`` and the ``RunctlError`` hierarchy (``runctl.errors``);
* ``cancel_job``, ``follow_log`` — stop a running job gracefully, stream its log;
* ``job_cost`` — what a job cost so far; ``snapshot`` — what ``runctl top`` shows;
* ``diagnose`` — the checks of ``runctl doctor``; ``setup_logging`` — runctl's log format and
  secret redaction; ``runctl.metrics`` — the Prometheus metrics and their exporters.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ below imports these
    from runctl import errors as errors
    from runctl import metrics as metrics
    from runctl.checkpointer import Checkpointer as Checkpointer
    from runctl.core.config import Config as Config
    from runctl.core.config import load_config as load_config
    from runctl.core.cost import job_cost as job_cost
    from runctl.core.errors import ExitCode as ExitCode
    from runctl.core.errors import RunctlError as RunctlError
    from runctl.core.ledger import Ledger as Ledger
    from runctl.core.logs import setup_logging as setup_logging
    from runctl.core.retry import RetryPolicy as RetryPolicy
    from runctl.workflows.dashboard import snapshot as snapshot
    from runctl.workflows.doctor import diagnose as diagnose
    from runctl.workflows.jobs import cancel_job as cancel_job
    from runctl.workflows.jobs import follow_log as follow_log
    from runctl.workflows.local import LocalRun as LocalRun
    from runctl.workflows.local import run_local as run_local

from runctl.version import __version__ as __version__

_EXPORTS = {
    "Checkpointer": "runctl.checkpointer",
    "Config": "runctl.core.config",
    "load_config": "runctl.core.config",
    "Ledger": "runctl.core.ledger",
    "LocalRun": "runctl.workflows.local",
    "run_local": "runctl.workflows.local",
    "RetryPolicy": "runctl.core.retry",
    "RunctlError": "runctl.core.errors",
    "ExitCode": "runctl.core.errors",
    "cancel_job": "runctl.workflows.jobs",
    "follow_log": "runctl.workflows.jobs",
    "job_cost": "runctl.core.cost",
    "snapshot": "runctl.workflows.dashboard",
    "diagnose": "runctl.workflows.doctor",
    "setup_logging": "runctl.core.logs",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    """Import an exported name on first use (PEP 562); the ``TYPE_CHECKING`` block mirrors it."""
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    if name in ("errors", "metrics"):
        return import_module(f"runctl.{name}")
    raise AttributeError(f"module 'runctl' has no attribute {name!r}")
