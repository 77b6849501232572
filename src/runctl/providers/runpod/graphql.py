"""A small GraphQL client for RunPod's API, and the one place RunPod errors become runctl errors.

Why not the ``runpod`` SDK: it pulls in a web-server stack, interpolates values into query text
and has no retry. This client is ~one POST:

* ``POST {api_url}/graphql`` with ``{"query", "variables", "operationName"}``. Values travel
  **only as GraphQL variables**: callers pass constant documents and a variables dict, never
  text built from user input (no quoting bugs, no injection).
* The API key goes in ``Authorization: Bearer …``, never in the URL (RunPod also accepts
  ``?api_key=``, which would put it in every log line that prints a URL). The key is resolved by
  :func:`resolve_api_key`: the ``RUNPOD_API_KEY`` environment variable, else the config key
  ``runpod.api_key``; it is held as a :class:`pydantic.SecretStr` and any text the server sends
  back is scrubbed of it before it reaches an error message, so neither ``--debug`` tracebacks
  nor logs can show it. The same goes for every other secret (:mod:`runctl.core.secrets`): the
  credential values of a pod's ``env`` in the variables are registered before they are sent,
  and a variable-coercion error that echoes its value (graphql-js: ``Variable "$input" got
  invalid value {…}; …``) keeps only its explanation: the echo may hold the pod's env, which
  a GraphQL server returns verbatim. A non-loopback ``http://`` URL is refused: a bearer key must not cross
  the network in clear text.
* Timeouts on connect/read/write; :class:`RetryPolicy` retries what is safe to retry.

Classification (:func:`classify_response`), once, here:

=============================================  ==========================  ==========
what came back                                 error                       retried
=============================================  ==========================  ==========
HTTP 401/403, GraphQL ``UNAUTHENTICATED``      :class:`AuthError` (77)     never
HTTP 429, "rate limit"                         :class:`ThrottledError`     yes
HTTP 5xx, connection reset, read timeout       ``ThrottledError``          yes, if the
                                               / :class:`AmbiguousRequest  operation is
                                               Error` for mutations        idempotent
"no longer any instances available", "does     :class:`CapacityError`      no: the
not have the resources"                                                    provider tries
                                                                           the next offer
HTTP 400, ``GRAPHQL_VALIDATION_FAILED``,       :class:`ValidationError`    never
``BAD_USER_INPUT``
"not found"                                    :class:`NotFoundError`      never
"balance" / "funds"                            :class:`QuotaError`         never
anything else in ``errors``                    :class:`CloudProviderError` never
=============================================  ==========================  ==========

GraphQL errors usually arrive as HTTP 200 with an ``errors`` array (and ``data`` null): the body
is checked on every status, not only on 4xx/5xx.

A mutation that creates something (``idempotent=False``) is never re-sent blindly after an
answer that leaves it unknown whether the server acted (5xx, read timeout, dropped connection):
the client raises :class:`AmbiguousRequestError` and the caller looks the resource up by name
before trying again (see :mod:`runctl.providers.runpod.api`). 429 and "connection refused" are
safe to retry for any operation: the server did not act.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from runctl.core.errors import (
    AuthError,
    CapacityError,
    CloudProviderError,
    ConfigError,
    NotFoundError,
    QuotaError,
    RunctlError,
    ThrottledError,
    ValidationError,
)
from runctl.core.retry import RetryPolicy

if TYPE_CHECKING:
    import httpx

    from runctl.core.config import RunpodConfig

API_KEY_ENV = "RUNPOD_API_KEY"
KEY_HINT = (
    f"set {API_KEY_ENV} (or [runpod] api_key); create a key in the RunPod console under Settings > API Keys"
)
CAPACITY_MARKERS = (
    "no longer any instances available",
    "does not have the resources to deploy",
    "no instances available",
    "not enough free gpus",
)
AUTH_CODES = frozenset({"UNAUTHENTICATED", "FORBIDDEN"})
VALIDATION_CODES = frozenset({"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED", "BAD_USER_INPUT"})
_LOOPBACK_NAMES = frozenset({"localhost"})


class AmbiguousRequestError(CloudProviderError):
    """A non-idempotent request failed in a way that leaves unknown whether the server acted."""


def resolve_api_key(config: RunpodConfig, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """The API key: ``RUNPOD_API_KEY`` (environment beats files, as everywhere), else config."""
    environ = os.environ if environ is None else environ
    if value := environ.get(API_KEY_ENV, "").strip():
        return SecretStr(value)
    if config.api_key is not None and config.api_key.get_secret_value().strip():
        return SecretStr(config.api_key.get_secret_value().strip())
    return None


def graphql_endpoint(api_url: str) -> str:
    """``{api_url}/graphql``, after checking the URL can carry a bearer key safely."""
    parsed = urllib.parse.urlsplit(api_url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"runpod.api_url {api_url!r} is not an http(s) URL",
            key="runpod.api_url",
            hint="use the default https://api.runpod.io, or an http(s) URL of a compatible server",
        )
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        raise ConfigError(
            f"runpod.api_url {api_url!r} uses plain http to a remote host: the API key would "
            "cross the network unencrypted",
            key="runpod.api_url",
            hint="use https:// (plain http is accepted for loopback test servers only)",
        )
    return api_url.strip().rstrip("/") + "/graphql"


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GraphQLClient:
    """POSTs GraphQL documents with variables to RunPod; returns ``data`` or raises a runctl error.

    Never shows the key: ``repr`` omits it, and server text is scrubbed of it.
    """

    def __init__(
        self,
        api_url: str,
        api_key: SecretStr | None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.endpoint = graphql_endpoint(api_url)
        self._key = api_key
        self.timeout = timeout
        self.retry = retry or RetryPolicy.for_cloud_api("RunPod API call")
        self._http: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"GraphQLClient(endpoint={self.endpoint!r}, api_key={'set' if self._key else 'unset'})"

    @property
    def has_key(self) -> bool:
        """Whether a key is configured (nothing is sent to check it)."""
        return self._key is not None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            from runctl.version import __version__

            self._http = httpx.Client(
                timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                follow_redirects=False,
                headers={"User-Agent": f"runctl/{__version__}"},
            )
        return self._http

    def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation: str,
        idempotent: bool = True,
        resource_id: str | None = None,
    ) -> dict[str, Any]:
        """Run one operation under the retry policy; returns the response's ``data`` object.

        ``operation`` names the GraphQL operation in ``document`` (sent as ``operationName``,
        used in error messages). ``idempotent=False`` for mutations that create something.
        """
        if self._key is None:
            raise AuthError(
                "no RunPod API key is configured",
                hint=KEY_HINT,
                operation=operation,
                provider="runpod",
            )
        body = {"query": document, "variables": dict(variables or {}), "operationName": operation}
        _register_env_secrets(body["variables"])

        def attempt() -> dict[str, Any]:
            return self._post(body, operation=operation, idempotent=idempotent, resource_id=resource_id)

        return self.retry.call(attempt, operation=f"RunPod {operation}")

    def _post(
        self, body: dict[str, Any], *, operation: str, idempotent: bool, resource_id: str | None
    ) -> dict[str, Any]:
        import httpx

        assert self._key is not None
        headers = {
            "Authorization": f"Bearer {self._key.get_secret_value()}",
            "Content-Type": "application/json",
        }
        common: dict[str, Any] = {"operation": operation, "resource_id": resource_id, "provider": "runpod"}
        try:
            response = self._client().post(self.endpoint, json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the server: safe to retry any operation.
            raise CloudProviderError(
                f"RunPod {operation}: cannot reach {self.endpoint}: {type(exc).__name__}",
                retryable=True,
                hint="check the network, and runpod.api_url",
                **common,
            ) from None
        except httpx.TransportError as exc:
            raise _unknown_outcome(
                f"RunPod {operation}: no complete answer from {self.endpoint} ({type(exc).__name__})",
                idempotent,
                **common,
            ) from None
        return classify_response(
            response.status_code,
            response.content,
            operation=operation,
            idempotent=idempotent,
            resource_id=resource_id,
            scrub=self._scrub,
        )

    def _scrub(self, text: str) -> str:
        """Server text without an echoed input, the key or any other secret (``***``)."""
        if self._key is not None and (key := self._key.get_secret_value()):
            text = text.replace(key, "***")
        return _scrub_text(text)


_ECHO = re.compile(r"""(Variable ["']\$\w+["'] got invalid value)\s""")
_ECHO_PATH = re.compile(r"""\s(at ["'][\w.\[\]]*["'])$""")


def hide_echoed_input(message: str) -> str:
    """A GraphQL error message without the variable value it echoes (see the module docstring):
    ``Variable "$input" got invalid value (not shown) at "input.env"; Expected type "String".``"""
    found = _ECHO.search(message)
    if found is None:
        return message
    rest = message[found.end() :]
    cut = rest.rfind("; ")
    explanation = rest[cut:] if cut >= 0 else ""
    path = _ECHO_PATH.search(rest[:cut]) if cut >= 0 else None
    where = f" {path.group(1)}" if path else ""
    return f"{message[: found.start()]}{found.group(1)} (not shown){where}{explanation}"


def _scrub_text(text: str) -> str:
    from runctl.core.secrets import redact

    return redact(hide_echoed_input(text))


def _register_env_secrets(value: Any) -> None:
    """Register the credential values of every ``env: [{key, value}]`` list in ``value``."""
    from runctl.core.secrets import register_env

    if isinstance(value, dict):
        for name, inner in value.items():
            if name == "env" and isinstance(inner, list):
                register_env({str(e.get("key")): str(e.get("value")) for e in inner if isinstance(e, dict)})
            else:
                _register_env_secrets(inner)
    elif isinstance(value, list):
        for inner in value:
            _register_env_secrets(inner)


def _unknown_outcome(message: str, idempotent: bool, **common: Any) -> CloudProviderError:
    if idempotent:
        return ThrottledError(message, hint="RunPod is failing or overloaded; runctl retries", **common)
    return AmbiguousRequestError(
        message,
        retryable=False,
        hint="the request may have been carried out; runctl checks by name before sending it again",
        **common,
    )


def classify_response(
    status: int,
    content: bytes,
    *,
    operation: str,
    idempotent: bool = True,
    resource_id: str | None = None,
    scrub: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """``data`` of a GraphQL answer, or the runctl error that the answer means (raised)."""
    import json

    if scrub is None:
        scrub = _scrub_text
    common: dict[str, Any] = {"operation": operation, "resource_id": resource_id, "provider": "runpod"}
    try:
        payload = json.loads(content) if content else None
    except ValueError:
        payload = None
    errors = payload.get("errors") if isinstance(payload, dict) else None
    messages = [
        scrub(str(e.get("message", ""))).strip() or "unspecified error"
        for e in (errors or [])
        if isinstance(e, dict)
    ]
    codes = {
        str((e.get("extensions") or {}).get("code", ""))
        for e in (errors or [])
        if isinstance(e, dict) and isinstance(e.get("extensions"), dict)
    }
    detail = "; ".join(messages)
    if status in (401, 403) or codes & AUTH_CODES:
        raise AuthError(
            f"RunPod refused the API key (HTTP {status}){': ' + detail if detail else ''}",
            hint=KEY_HINT,
            **common,
        )
    if status == 429 or any("rate limit" in m.lower() or "too many requests" in m.lower() for m in messages):
        raise ThrottledError(
            f"RunPod {operation}: rate limited (HTTP {status})",
            hint="RunPod is rate limiting this key; runctl retries with backoff",
            **common,
        )
    if status >= 500:
        snippet = detail or scrub(content[:200].decode("utf-8", "replace")).strip()
        raise _unknown_outcome(
            f"RunPod {operation}: server error HTTP {status}: {snippet}", idempotent, **common
        )
    if errors:
        raise _classify_errors(messages, codes, status, operation, common)
    if status >= 400:
        raise ValidationError(
            f"RunPod {operation}: request refused with HTTP {status}",
            hint="check the values passed to this command",
            operation=operation,
            resource_id=resource_id,
        )
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise _unknown_outcome(
            f"RunPod {operation}: the answer (HTTP {status}) is not a GraphQL response", idempotent, **common
        )
    return payload["data"]


def _classify_errors(
    messages: list[str], codes: set[str], status: int, operation: str, common: dict[str, Any]
) -> RunctlError:
    detail = "; ".join(messages)
    lowered = detail.lower()
    text = f"RunPod {operation}: {detail}"
    if any(marker in lowered for marker in CAPACITY_MARKERS):
        return CapacityError(
            text,
            hint="RunPod has no machine for this GPU type / cloud right now: try another GPU "
            "(--gpu may be repeated), --cloud all, or later",
            **common,
        )
    if codes & VALIDATION_CODES or status == 400:
        return ValidationError(
            text,
            hint="RunPod rejected a value: check the GPU type (runctl runpod gpus), image and sizes",
            operation=operation,
            resource_id=common.get("resource_id"),
        )
    if re.search(r"\bnot found\b|does not exist|no pod found", lowered):
        return NotFoundError(
            text,
            hint="check the pod id ('runctl runpod list')",
            operation=operation,
            resource_id=common.get("resource_id"),
        )
    if "balance" in lowered or "funds" in lowered:
        return QuotaError(text, hint="add credit to your RunPod account", **common)
    return CloudProviderError(text, hint="check the values passed to this command", **common)
