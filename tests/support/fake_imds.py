"""A fake EC2 instance metadata service (IMDSv2 only) on loopback, controlled by the test.

``imds.schedule_interruption(action="terminate", in_seconds=120)`` makes
``/latest/meta-data/spot/instance-action`` answer as EC2 does two minutes before a spot
reclaim; until then it answers 404. Requests without a valid token get 401, like IMDSv2 with
``HttpTokens=required``.
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeImds:
    def __init__(
        self, *, instance_id: str = "i-0123456789abcdef0", region: str = "us-east-1", zone: str = "us-east-1a"
    ) -> None:
        self.metadata: dict[str, str] = {
            "instance-id": instance_id,
            "placement/region": region,
            "placement/availability-zone": zone,
            "instance-life-cycle": "spot",
        }
        self.tokens: set[str] = set()
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                fake.requests.append(f"PUT {self.path}")
                if self.path != "/latest/api/token" or not self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    self._send(400)
                    return
                token = secrets.token_hex(16)
                fake.tokens.add(token)
                self._send(200, token)

            def do_GET(self) -> None:
                fake.requests.append(f"GET {self.path}")
                if self.headers.get("X-aws-ec2-metadata-token") not in fake.tokens:
                    self._send(401)
                    return
                key = self.path.removeprefix("/latest/meta-data/")
                value = fake.metadata.get(key)
                self._send(200, value) if value is not None else self._send(404, "Not Found")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def schedule_interruption(self, action: str = "terminate", in_seconds: float = 120) -> None:
        when = datetime.now(UTC) + timedelta(seconds=in_seconds)
        self.metadata["spot/instance-action"] = json.dumps(
            {"action": action, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
