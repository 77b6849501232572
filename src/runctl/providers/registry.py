"""The one place providers are built: a name → class table, imported lazily.

Adding a provider is one folder under ``providers/`` and one line in :data:`PROVIDERS`; nothing
above this module names a provider class. Classes are imported on first use, so naming
``aws`` does not load boto3 until an AWS provider is actually built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import import_module
from typing import TYPE_CHECKING

from runctl.core.errors import UsageError
from runctl.core.lifecycle import Lifecycle

if TYPE_CHECKING:
    from runctl.core.config import Config
    from runctl.core.ledger import Ledger
    from runctl.providers.base import ComputeProvider, ResourceProvider

#: Cloud providers: name → "module:Class" of a :class:`~runctl.providers.base.ComputeProvider`.
PROVIDERS: dict[str, str] = {
    "aws": "runctl.providers.aws.provider:AwsProvider",
    "runpod": "runctl.providers.runpod.provider:RunpodProvider",
}
#: This machine: processes of ``runctl local`` (a resource provider only).
LOCAL = "local"


def names() -> list[str]:
    """The cloud providers a job can run on."""
    return list(PROVIDERS)


def compute_class(name: str) -> type[ComputeProvider]:
    """The class of cloud provider ``name`` (UsageError naming the choices otherwise)."""
    try:
        module, _, cls = PROVIDERS[name].partition(":")
    except KeyError:
        raise UsageError(
            f"{name!r} is not a cloud provider runctl knows",
            hint=f"use one of: {', '.join(PROVIDERS)}",
        ) from None
    found: type[ComputeProvider] = getattr(import_module(module), cls)
    return found


def compute(
    name: str, ledger: Ledger, config: Config, *, progress: Callable[[str], None] | None = None
) -> ComputeProvider:
    """Build cloud provider ``name`` from the loaded configuration."""
    return compute_class(name).from_config(ledger, config, progress=progress)


def local() -> ResourceProvider:
    """This machine's provider (its processes)."""
    from runctl.providers.local import LocalProvider

    return LocalProvider()


def lifecycle(
    ledger: Ledger,
    config: Config,
    providers: Iterable[str],
    *,
    progress: Callable[[str], None] | None = None,
) -> Lifecycle:
    """A Lifecycle over the named providers (``local`` included), with the cloud retry policy."""
    built: dict[str, ResourceProvider] = {}
    for name in providers:
        built[name] = local() if name == LOCAL else compute(name, ledger, config, progress=progress)
    return Lifecycle(ledger, built)
