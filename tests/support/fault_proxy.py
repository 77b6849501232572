"""A fault-injecting HTTP proxy for tests: sits between boto3/httpx and a loopback server.

Every request is recorded (``proxy.requests``). A rule — ``proxy.rule = fn`` where
``fn(request) -> Fault | None`` — decides per request whether to answer with an injected error
(status + body), reset the connection, delay, or forward untouched. Helpers build the common
rules: fail the first N calls of an operation, fail a fraction at random (seeded).
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def action(self) -> str | None:
        """The AWS query-protocol Action (EC2, SSM over query) or JSON target, if any."""
        if target := self.headers.get("x-amz-target") or self.headers.get("X-Amz-Target"):
            return target.rsplit(".", 1)[-1]
        if self.body and b"Action=" in self.body:
            params = urllib.parse.parse_qs(self.body.decode("latin-1"))
            return params.get("Action", [None])[0]
        return None


@dataclass
class Fault:
    status: int = 503
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # close the connection without answering
    delay: float = 0.0  # sleep before answering (or forwarding, if status == 0)
    forward: bool = False  # after the delay, forward the request anyway


def ec2_error(code: str, status: int = 400, message: str = "injected") -> Fault:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error></Errors><RequestID>x</RequestID></Response>"
    ).encode()
    return Fault(status=status, body=body, headers={"Content-Type": "text/xml"})


def s3_error(code: str, status: int = 503, message: str = "injected") -> Fault:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>x</RequestId></Error>"
    ).encode()
    return Fault(status=status, body=body, headers={"Content-Type": "application/xml"})


class FaultProxy:
    """Start with ``FaultProxy(upstream_url)``; use ``.url``; ``.close()`` when done."""

    def __init__(self, upstream: str) -> None:
        self.upstream_url = upstream
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.rule: Callable[[Request], Fault | None] | None = None
        self.requests: list[Request] = []
        self.injected = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, dict(self.headers.items()), body)
                with proxy._lock:
                    proxy.requests.append(request)
                    fault = proxy.rule(request) if proxy.rule else None
                    if fault and not fault.forward:
                        proxy.injected += 1
                if fault and fault.delay:
                    time.sleep(fault.delay)
                if fault and fault.reset:
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault and not fault.forward:
                    self.send_response(fault.status)
                    for key, value in fault.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(fault.body)))
                    self.end_headers()
                    self.wfile.write(fault.body)
                    return
                self._forward(request)

            def _forward(self, request: Request) -> None:
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                headers = {k: v for k, v in request.headers.items() if k.lower() != "connection"}
                conn.request(request.method, request.path, body=request.body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                # a HEAD answer has no body but keeps the object's Content-Length
                length = response.getheader("Content-Length") if request.method == "HEAD" else None
                self.send_header("Content-Length", length or str(len(payload)))
                self.end_headers()
                if request.method != "HEAD":
                    self.wfile.write(payload)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail_first(self, n: int, fault: Fault, *, action: str | None = None) -> None:
        """Inject ``fault`` on the first ``n`` requests (of ``action`` only, if given)."""
        remaining = [n]

        def rule(request: Request) -> Fault | None:
            if action is not None and request.action != action:
                return None
            if remaining[0] > 0:
                remaining[0] -= 1
                return fault
            return None

        self.rule = rule

    def fail_fraction(self, fraction: float, faults: list[Fault], *, seed: int = 0) -> None:
        """Inject one of ``faults`` (chosen at random) on about ``fraction`` of requests."""
        rng = random.Random(seed)

        def rule(_request: Request) -> Fault | None:
            return rng.choice(faults) if rng.random() < fraction else None

        self.rule = rule

    def count(self, action: str) -> int:
        return sum(1 for r in self.requests if r.action == action)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
