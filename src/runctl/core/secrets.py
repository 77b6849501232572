"""The secrets runctl handles, and the one redaction every error, ledger write and log line uses.

A secret is registered the moment runctl gets hold of it, wherever it came from, and is masked
(``***``) from then on in every :class:`~runctl.core.errors.RunctlError` (message and hint,
when it is made and again when it is shown), every ledger detail and event, and every log
record:

* the environment's ``RUNPOD_API_KEY``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``
  (registered on first use, so even a process that never set up logging masks them);
* ``[runpod] api_key`` from the config (when the config is loaded);
* the AWS credentials boto3 resolved, from any source of its chain (``~/.aws/credentials``, a
  profile, SSO, an instance role), when a client is built;
* the values of a machine's environment whose names say they are credentials (``*KEY*``,
  ``*SECRET*``, ``*TOKEN*``, ``*PASSWORD*``, ``*CREDENTIAL*``…), when it is handed to a
  provider (:func:`register_env`).

Besides exact values, anything that *looks* like a credential is masked: ``Bearer <token>``, a
URL's password, and ``<name>=<value>`` / ``<name>: <value>`` where the name says key, secret,
token or password. The patterns are written not to mangle ordinary text: a name inside a path
(``/etc/passwd: [Errno 17]``) is not a credential, and after ``name:`` the value must look like
one (quoted, or six characters or more with a digit), so ``token: expired`` stays readable.
Values shorter than six characters are never registered: they would mask ordinary words.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping

MASK = "***"
SECRET_ENV_VARS = ("RUNPOD_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
MIN_SECRET_LEN = 6

#: Environment variable names whose values are credentials.
SECRET_NAME = re.compile(r"(?i)key|secret|token|passw|credential|auth|private|signature|cookie|session")

_NAME = (
    r"(?<![\w./\\-])([A-Za-z0-9_.-]*(?:api[_-]?key|secret(?:[_-]?access)?(?:[_-]?key)?|"
    r"(?:session|security|access|auth|refresh|api)[_-]?token|token|password|passwd))"
)
_VALUE = r"(?!\*\*\*)[^\s\"'&,;)\]}]+"
_PATTERNS = (
    # Authorization: Bearer <token>
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1" + MASK),
    # api_key=…, AWS_SECRET_ACCESS_KEY = …, "session_token": "…"
    (re.compile(r"(?i)" + _NAME + r"([\"']?\s*=\s*[\"']?|[\"']?\s*:\s*[\"'])" + _VALUE), r"\1\2" + MASK),
    # password: hunter2hunter2 (unquoted after a colon: only a value that looks like a secret)
    (
        re.compile(r"(?i)" + _NAME + r"([\"']?\s*:\s*)(?!\*\*\*)(?=[^\s\"'&,;)\]}]*\d)[^\s\"'&,;)\]}\[]{6,}"),
        r"\1\2" + MASK,
    ),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@"), r"\1" + MASK + "@"),
)

_lock = threading.Lock()
_values: set[str] = set()


def register(secret: str | None) -> None:
    """Mask this exact value from now on, everywhere (too short a value is ignored)."""
    if secret and len(secret.strip()) >= MIN_SECRET_LEN:
        with _lock:
            _values.add(secret.strip())


def register_all(secrets: Iterable[str | None]) -> None:
    for secret in secrets:
        register(secret)


def register_env(env: Mapping[str, str]) -> None:
    """Register the values of ``env`` whose names say they are credentials (a machine's env)."""
    register_all(value for name, value in env.items() if SECRET_NAME.search(name))


def secrets_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values set in the environment (see :data:`SECRET_ENV_VARS`)."""
    environ = os.environ if environ is None else environ
    return [environ[var] for var in SECRET_ENV_VARS if environ.get(var)]


def redact(text: str) -> str:
    """``text`` with every registered secret and credential-looking value masked."""
    with _lock:
        found = _values.union(s.strip() for s in secrets_from_env() if len(s.strip()) >= MIN_SECRET_LEN)
    values = sorted(found, key=len, reverse=True)
    for secret in values:
        text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
