"""Logging for runctl: human lines on stderr, or one JSON object per line; secrets redacted.

* Everything runctl says on stderr — a command's status lines (``runctl.cli``), retries,
  shutdown notices, errors — goes through the ``runctl`` logger, so one switch changes the
  format of all of it. Text (the default) is styled with rich on a terminal and plain when
  piped (then rich is not even imported); ``--log-format json`` writes one JSON object per
  line with ``ts``, ``level``, ``logger``, ``message`` and, when known, ``job_id``,
  ``resource_id``, ``operation``, ``provider``, ``attempt``, ``error`` (the error class),
  ``exit_code``, ``retryable``, ``hint`` and ``traceback``. A training script's own output is
  not a log: it stays on stdout and in the job's log file, untouched.
* Levels: by default a command's status lines (INFO of ``runctl.cli``) and every warning;
  ``-v`` adds INFO of every runctl module, ``-vv`` DEBUG; ``-q`` only errors.
* Secrets are removed by :class:`SecretRedactor`, a :class:`logging.Filter` on every handler
  runctl installs (so it also covers records propagated from any ``runctl.*`` logger, their
  arguments, extra fields and tracebacks). What it masks is :mod:`runctl.core.secrets`: every
  secret runctl registered (environment, config, boto3's resolved credentials, a machine's
  credential env) and anything that looks like a credential. Redaction is by filter, not by
  convention: code that logs a secret by mistake still does not print it.
* The ``[monitoring] log_format`` config key applies when the command loads its configuration
  and ``--log-format`` was not given (the flag, or ``RUNCTL_LOG_FORMAT``, always wins).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from runctl.core.secrets import redact as redact  # re-exported: logs.redact is the public name
from runctl.core.secrets import register, register_all

if TYPE_CHECKING:
    from rich.console import Console

    from runctl.core.errors import RunctlError

LogFormat = Literal["text", "json"]
ROOT = "runctl"
CLI_LOGGER = "runctl.cli"
#: Record attributes that JSON lines carry when set.
FIELDS = (
    "job_id",
    "resource_id",
    "operation",
    "provider",
    "attempt",
    "error",
    "exit_code",
    "retryable",
    "resource_state",
    "hint",
)


class SecretRedactor(logging.Filter):
    """Replaces known secret values and credential-looking text in every record it sees."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        register_all(secrets)

    def add(self, secret: str | None) -> None:
        """Mask this exact value from now on (everywhere: see :mod:`runctl.core.secrets`)."""
        register(secret)

    def redact(self, text: str) -> str:
        return redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name in FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, self.redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["traceback"] = record.exc_text
        return json.dumps(data, default=str, ensure_ascii=False)


class _JsonHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (resolved per record: tests and pagers swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class _TextHandler(logging.Handler):
    """Lines on stderr: ``error:``/``hint:`` for errors, ``runctl:`` for warnings, status lines
    for INFO. Styled with rich on a terminal (or with ``FORCE_COLOR``); piped, the same words
    are written plain, without importing rich (a command's start-up does not pay for it)."""

    def __init__(self) -> None:
        super().__init__()
        self._console: Console | None = None

    def _out(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            hint = getattr(record, "hint", None) if record.levelno >= logging.ERROR else None
            if record.levelno >= logging.ERROR:
                lines = [("bold red", "error:", message)] + ([("yellow", "hint:", hint)] if hint else [])
            elif record.levelno >= logging.WARNING:
                lines = [("yellow", "runctl:", message)]
            elif record.name == CLI_LOGGER:
                lines = [("dim", "", message)]
            else:
                lines = [("dim", "", f"{record.name}: {message}")]
            if os.environ.get("FORCE_COLOR") or sys.stderr.isatty():
                self._styled(lines, record.exc_text)
            else:
                text = "".join(f"{label} {words}\n" if label else f"{words}\n" for _s, label, words in lines)
                sys.stderr.write(text + (f"{record.exc_text}\n" if record.exc_text else ""))
                sys.stderr.flush()
        except Exception:
            self.handleError(record)

    def _styled(self, lines: list[tuple[str, str, str]], exc_text: str | None) -> None:
        from rich.markup import escape

        console = self._out()
        for style, label, words in lines:
            if label:
                console.print(f"[{style}]{label}[/] {escape(words)}")
            else:
                console.print(f"[{style}]{escape(words)}[/]")
        if exc_text:
            console.print(exc_text, markup=False, highlight=False)


_redactor = SecretRedactor()
_handler: logging.Handler | None = None
_format: LogFormat = "text"
_format_explicit = False


def setup_logging(
    log_format: LogFormat | None = None,
    *,
    verbosity: int = 0,
    secrets: Iterable[str | None] = (),
) -> None:
    """Install runctl's handler (replacing an earlier one): format, level and redaction.

    ``log_format`` None means "not chosen": text until :func:`apply_config_format` says
    otherwise. ``verbosity``: -1 quiet, 0 default, 1 ``-v``, 2+ ``-vv``.
    """
    global _format_explicit
    _format_explicit = log_format is not None
    register_all(secrets)
    _install(log_format or "text")
    root, cli = logging.getLogger(ROOT), logging.getLogger(CLI_LOGGER)
    if verbosity < 0:
        root.setLevel(logging.ERROR)
        cli.setLevel(logging.ERROR)
    else:
        root.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
        cli.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)


def _install(log_format: LogFormat) -> None:
    global _handler, _format
    root = logging.getLogger(ROOT)
    if _handler is not None:
        root.removeHandler(_handler)
    _format = log_format
    _handler = _JsonHandler() if log_format == "json" else _TextHandler()
    if log_format == "json":
        _handler.setFormatter(JsonFormatter())
    _handler.addFilter(_redactor)
    root.addHandler(_handler)


def apply_config_format(log_format: LogFormat) -> None:
    """Switch to the configured format, unless the command line chose one."""
    if _handler is not None and not _format_explicit and log_format != _format:
        _install(log_format)


def add_secret(secret: str | None) -> None:
    """Mask ``secret`` in every log line (and error, and ledger write) from now on."""
    register(secret)


def is_configured() -> bool:
    """Whether :func:`setup_logging` installed runctl's handler in this process."""
    return _handler is not None


def is_json() -> bool:
    return _handler is not None and _format == "json"


def report_error(exc: RunctlError, *, debug: bool = False) -> None:
    """Log a runctl error with its fields (and the traceback with ``--debug``), redacted."""
    if _handler is None:
        setup_logging()
    logging.getLogger(CLI_LOGGER).error(
        exc.message,
        exc_info=exc if debug else None,
        extra={k: v for k, v in exc.to_dict().items() if k != "message"},
    )


def report_internal_error(exc: BaseException, *, debug: bool = False) -> None:
    """Log an unexpected exception as an internal error (exit code 70)."""
    from runctl.core.errors import ExitCode

    if _handler is None:
        setup_logging()
    logging.getLogger(CLI_LOGGER).error(
        f"internal error: {type(exc).__name__}: {exc}",
        exc_info=exc if debug else None,
        extra={
            "error": "InternalError",
            "exit_code": int(ExitCode.INTERNAL),
            "hint": "run again with --debug for a traceback, and report it",
        },
    )
