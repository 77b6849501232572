"""The job's variables and secrets: ``--env K=V``, ``--env-file FILE``, ``--secret NAME``.

They reach the machine through the job's storage and nothing else: the controller writes them
to ``control/env.json`` under the job's prefix (:data:`runctl.agent.sync.ENV_KEY`) before the
machine starts; the agent reads it with its own storage credentials and gives them to the
script (and ``--setup``) as environment variables. The SSM command text (kept in SSM's command
history), the pod's name and env, the ledger and the logs never hold a value: the job's request
in the ledger keeps only the names. The object is deleted when the job ends (the controller's
``_finish`` and every path that ends a job through it); a job that nobody follows to its end
keeps it under its prefix until ``runctl jobs wait`` ends it.

Values: ``--env K=V`` as given; ``--env-file`` holds ``K=V`` lines (``#`` comments and blank
lines skipped, ``export`` prefixes and one level of quotes removed); ``--secret NAME`` reads the
controller's environment variable ``NAME``, ``--secret NAME=PATH`` the file ``PATH`` (one
trailing newline dropped). Secret values are registered with :mod:`runctl.core.secrets` at once,
so no error or log line of this process can show them. Later sources win (file, then
``--env``, then ``--secret``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from runctl.agent.sync import ENV_KEY
from runctl.core import secrets
from runctl.core.errors import RunctlError, ValidationError
from runctl.storage import Storage

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def collect(
    env: Iterable[str], env_file: Path | None, secret: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """The variables the options describe (see the module docstring), and which are secrets."""
    values: dict[str, str] = {}
    secret_names: list[str] = []
    if env_file is not None:
        values.update(_read_env_file(env_file))
    for item in env:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(f"--env {item!r} is not NAME=VALUE", hint="e.g. --env EPOCHS=3")
        values[_check_name(name, "--env")] = value
    for item in secret:
        name, sep, path = item.partition("=")
        _check_name(name, "--secret")
        if sep:
            try:
                value = Path(path).read_text()
            except OSError as exc:
                raise ValidationError(
                    f"--secret {name}: cannot read {path}: {exc.strerror or exc}",
                    hint="give a readable file: --secret NAME=PATH, or set NAME in the environment",
                ) from None
            value = value[:-1] if value.endswith("\n") else value
        elif name in os.environ:
            value = os.environ[name]
        else:
            raise ValidationError(
                f"--secret {name}: no environment variable {name} on this machine",
                hint=f"export {name}=… first, or read it from a file: --secret {name}=PATH",
            )
        secrets.register(value)
        values[name] = value
        secret_names.append(name)
    return values, secret_names


def upload(storage: Storage, values: dict[str, str], secret_names: list[str]) -> None:
    """Write the variables under the job's prefix, for its agent (which masks the secrets'
    values in its own logs as the controller does)."""
    if values:
        document = {"variables": values, "secrets": secret_names}
        storage.put_bytes(ENV_KEY, json.dumps(document).encode(), content_type="application/json")


def delete(storage: Storage) -> None:
    """The job ended: its variables go (quietly: a storage error must not change its outcome)."""
    with contextlib.suppress(RunctlError):
        storage.delete([ENV_KEY])


def _check_name(name: str, option: str) -> str:
    if not _NAME.match(name):
        raise ValidationError(
            f"{option}: {name!r} is not a valid environment variable name",
            hint="letters, digits and _, not starting with a digit",
        )
    return name


def _read_env_file(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ValidationError(
            f"--env-file {path}: {exc.strerror or exc}", hint="give a readable file of NAME=VALUE lines"
        ) from None
    values = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not _NAME.match(name.strip()):
            raise ValidationError(
                f"--env-file {path}, line {number}: not NAME=VALUE", hint="one NAME=VALUE per line"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values
