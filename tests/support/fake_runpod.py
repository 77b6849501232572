"""A fake RunPod GraphQL API on loopback: a real HTTP server executing a real GraphQL schema.

The schema (graphql-core) is modelled on RunPod's public one for the parts runctl uses:
``myself { pods }``, ``pod(input: {podId})``, ``gpuTypes { … lowestPrice(input: {gpuCount}) }``,
``podFindAndDeployOnDemand``, ``podRentInterruptable``, ``podStop``, ``podResume``,
``podBidResume``, ``podTerminate`` (which returns nothing). Queries are parsed and validated
like a real GraphQL server does (unknown fields, bad variables → HTTP 400), and errors come back
the way RunPod sends them: HTTP 200 with an ``errors`` array and ``data.<field>: null``, e.g.
"There are no longer any instances available with the requested specifications. Please refresh
and try again."

Beyond the real API it is strict in two ways runctl promises: the key must come in an
``Authorization: Bearer`` header (never ``?api_key=``), and every argument value must be a
GraphQL variable (a literal value anywhere in a query is refused with HTTP 400), so every test
that talks to it checks that runctl never interpolates values into query text.

Knobs: ``fail_next(n, status, field=…)`` (429s, 5xx), ``no_capacity`` (GPU type / cloud pairs),
``terminate_lag`` (polls that still see a terminated pod), ``fail_after_create`` (the pod is
created, then the answer is an HTTP error: a lost response), ``echo_key_in_errors``,
``reject_input_with_echo`` (a create is refused with graphql-js's variable-coercion error,
which echoes the whole ``$input``, pod env included),
``on_request`` (a hook run before each request is executed), and ``requests`` (the log).
"""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from graphql import (
    FieldNode,
    GraphQLError,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    VariableNode,
    Visitor,
    build_schema,
    execute,
    parse,
    validate,
    visit,
)

CAPACITY_MESSAGE = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)

SDL = """
type Query {
  myself: User
  pod(input: PodFilter!): Pod
  gpuTypes(input: GpuTypeFilter): [GpuType]
}

type Mutation {
  podFindAndDeployOnDemand(input: PodFindAndDeployOnDemandInput): Pod
  podRentInterruptable(input: PodRentInterruptableInput!): Pod
  podStop(input: PodStopInput!): Pod
  podResume(input: PodResumeInput!): Pod
  podBidResume(input: PodBidResumeInput!): Pod
  podTerminate(input: PodTerminateInput!): Void
}

scalar Void

type User { id: String pods: [Pod] }

enum PodStatus { CREATED RUNNING RESTARTING EXITED PAUSED DEAD TERMINATED }
enum CloudTypeEnum { ALL SECURE COMMUNITY }

type Pod {
  id: String!
  name: String
  desiredStatus: PodStatus
  costPerHr: Float
  gpuCount: Int
  imageName: String
  dockerArgs: String
  env: [String]
  containerDiskInGb: Int
  volumeInGb: Float
  volumeMountPath: String
  machineId: String
  lastStatusChange: String
  uptimeSeconds: Int
  runtime: PodRuntime
  machine: PodMachineInfo
}

type PodRuntime { uptimeInSeconds: Int }
type PodMachineInfo { gpuDisplayName: String podHostId: String }

type GpuType {
  id: String!
  displayName: String
  memoryInGb: Int
  secureCloud: Boolean
  communityCloud: Boolean
  securePrice: Float
  communityPrice: Float
  secureSpotPrice: Float
  communitySpotPrice: Float
  maxGpuCount: Int
  lowestPrice(input: GpuLowestPriceInput): LowestPrice
}

type LowestPrice { minimumBidPrice: Float uninterruptablePrice: Float stockStatus: String }

input PodFilter { podId: String! }
input GpuTypeFilter { id: String }
input GpuLowestPriceInput { gpuCount: Int secureCloud: Boolean }
input EnvironmentVariableInput { key: String! value: String! }
input PodStopInput { podId: String! }
input PodTerminateInput { podId: String! }
input PodResumeInput { podId: String! gpuCount: Int! }
input PodBidResumeInput { podId: String! bidPerGpu: Float! gpuCount: Int! }

input PodFindAndDeployOnDemandInput {
  name: String
  imageName: String
  gpuTypeId: String
  gpuCount: Int
  cloudType: CloudTypeEnum
  containerDiskInGb: Int
  volumeInGb: Int
  volumeMountPath: String
  dockerArgs: String
  env: [EnvironmentVariableInput]
  ports: String
  minVcpuCount: Int
  minMemoryInGb: Int
  supportPublicIp: Boolean
  startSsh: Boolean
  dataCenterId: String
  templateId: String
  networkVolumeId: String
}

input PodRentInterruptableInput {
  bidPerGpu: Float!
  name: String
  imageName: String
  gpuTypeId: String
  gpuCount: Int
  cloudType: CloudTypeEnum
  containerDiskInGb: Int
  volumeInGb: Int
  volumeMountPath: String
  dockerArgs: String
  env: [EnvironmentVariableInput]
  ports: String
  minVcpuCount: Int
  minMemoryInGb: Int
  supportPublicIp: Boolean
  startSsh: Boolean
  dataCenterId: String
  templateId: String
  networkVolumeId: String
}
"""
SCHEMA = build_schema(SDL)

#: A small catalog shaped like RunPod's (ids, display names, per-GPU prices; null = not offered).
DEFAULT_GPU_TYPES: list[dict[str, Any]] = [
    {
        "id": "NVIDIA GeForce RTX 4090",
        "displayName": "RTX 4090",
        "memoryInGb": 24,
        "secureCloud": True,
        "communityCloud": True,
        "securePrice": 0.69,
        "communityPrice": 0.34,
        "secureSpotPrice": 0.35,
        "communitySpotPrice": 0.2,
        "maxGpuCount": 8,
    },
    {
        "id": "NVIDIA RTX A5000",
        "displayName": "RTX A5000",
        "memoryInGb": 24,
        "secureCloud": True,
        "communityCloud": True,
        "securePrice": 0.27,
        "communityPrice": 0.16,
        "secureSpotPrice": 0.14,
        "communitySpotPrice": 0.11,
        "maxGpuCount": 8,
    },
    {
        "id": "NVIDIA H100 80GB HBM3",
        "displayName": "H100 SXM",
        "memoryInGb": 80,
        "secureCloud": True,
        "communityCloud": False,
        "securePrice": 2.99,
        "communityPrice": None,
        "secureSpotPrice": 1.75,
        "communitySpotPrice": None,
        "maxGpuCount": 8,
    },
]


@dataclass
class RecordedRequest:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    fields: list[str] = field(default_factory=list)  # top-level fields, e.g. ["podStop"]
    literals: list[str] = field(default_factory=list)  # argument values that were not variables
    status: int = 0

    @property
    def operation(self) -> str | None:
        return (self.body or {}).get("operationName")

    @property
    def variables(self) -> dict[str, Any]:
        return (self.body or {}).get("variables") or {}


@dataclass
class _Fault:
    remaining: int
    status: int
    field: str | None
    body: bytes


@dataclass
class FakePod:
    id: str
    name: str
    gpu_type: dict[str, Any]
    gpu_count: int
    cloud: str
    spot: bool
    bid: float | None
    image: str
    docker_args: str | None
    env: list[dict[str, str]]
    container_disk_gb: int
    volume_gb: int
    status: str = "RUNNING"
    started_at: float | None = field(default_factory=time.time)
    terminate_polls_left: int | None = None  # after podTerminate: polls that still see it

    @property
    def cost_per_hr(self) -> float:
        if self.spot:
            return round((self.bid or 0.0) * self.gpu_count, 4)
        price = self.gpu_type["securePrice"] if self.cloud == "SECURE" else self.gpu_type["communityPrice"]
        return round(price * self.gpu_count, 4)

    def view(self) -> dict[str, Any]:
        """The pod as the GraphQL schema's ``Pod`` type."""
        running = self.status == "RUNNING" and self.started_at is not None
        uptime = int(time.time() - self.started_at) if running and self.started_at else 0
        return {
            "id": self.id,
            "name": self.name,
            "desiredStatus": self.status,
            "costPerHr": self.cost_per_hr,
            "gpuCount": self.gpu_count,
            "imageName": self.image,
            "dockerArgs": self.docker_args,
            "env": [f"{e['key']}={e['value']}" for e in self.env],
            "containerDiskInGb": self.container_disk_gb,
            "volumeInGb": self.volume_gb,
            "volumeMountPath": "/workspace",
            "machineId": "m" + self.id[:10],
            "lastStatusChange": f"{self.status.title()} at {time.ctime()}",
            "uptimeSeconds": uptime,
            "runtime": {"uptimeInSeconds": uptime} if running else None,
            "machine": {"gpuDisplayName": self.gpu_type["displayName"], "podHostId": f"{self.id}-1"},
        }


def _error(message: str, code: str = "INTERNAL_SERVER_ERROR") -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


class _Root:
    """Root resolvers: graphql-core calls ``root.<field>(info, **args)``."""

    def __init__(self, fake: FakeRunpod) -> None:
        self.fake = fake

    def myself(self, info: Any) -> dict[str, Any]:
        return {"id": "user-fake", "pods": [p.view() for p in self.fake.visible_pods()]}

    def pod(self, info: Any, input: dict[str, Any]) -> dict[str, Any] | None:
        pod = self.fake.visible_pod(input["podId"])
        return pod.view() if pod else None

    def gpuTypes(self, info: Any, input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        wanted = (input or {}).get("id")
        return [self.fake.gpu_view(g) for g in self.fake.gpu_types if wanted in (None, g["id"])]

    def podFindAndDeployOnDemand(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return self.fake.deploy(input, spot=False).view()

    def podRentInterruptable(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return self.fake.deploy(input, spot=True).view()

    def podStop(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        pod = self.fake.live_pod(input["podId"])
        pod.status, pod.started_at = "EXITED", None
        return pod.view()

    def podResume(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        pod = self.fake.live_pod(input["podId"])
        if pod.spot:
            raise _error("Cannot resume a spot pod as an on demand pod. Use podBidResume.", "BAD_USER_INPUT")
        return self.fake.resume(pod, input["gpuCount"]).view()

    def podBidResume(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        pod = self.fake.live_pod(input["podId"])
        pod.spot, pod.bid = True, input["bidPerGpu"]
        return self.fake.resume(pod, input["gpuCount"]).view()

    def podTerminate(self, info: Any, input: dict[str, Any]) -> None:
        pod = self.fake.live_pod(input["podId"])
        if pod.terminate_polls_left is None:
            pod.terminate_polls_left = self.fake.terminate_lag
        self.fake.settle(pod)
        return None


class FakeRunpod:
    """Start with ``FakeRunpod(api_key=…)``; point runctl at ``.url``; ``.close()`` when done."""

    def __init__(self, api_key: str = "rp-test-key-0000") -> None:
        self.api_key = api_key
        self.gpu_types: list[dict[str, Any]] = [dict(g) for g in DEFAULT_GPU_TYPES]
        self.pods: dict[str, FakePod] = {}
        self.requests: list[RecordedRequest] = []
        self.no_capacity: set[tuple[str, str | None]] = set()  # (gpu type id, cloud or None=any)
        self.terminate_lag = 0
        self.fail_after_create: int | None = None
        self.echo_key_in_errors = False
        self.reject_input_with_echo = False
        self.on_request: Callable[[RecordedRequest], None] | None = None
        self.hook_errors: list[BaseException] = []
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._root = _Root(self)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, payload = fake._handle(self.path, dict(self.headers.items()), raw)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- knobs and introspection ---------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503, *, field: str | None = None, body: bytes = b"") -> None:
        """Answer the next ``n`` requests (that use top-level ``field``, if given) with ``status``."""
        if not body:
            message = "Too Many Requests" if status == 429 else "upstream unavailable"
            body = json.dumps({"errors": [{"message": message}]}).encode()
        with self._lock:
            self._faults.append(_Fault(n, status, field, body))

    def count(self, field_name: str) -> int:
        """How many requests used the top-level field ``field_name``."""
        return sum(field_name in r.fields for r in self.requests)

    def visible_pods(self) -> list[FakePod]:
        return [p for p in list(self.pods.values()) if self._visible(p)]

    def visible_pod(self, pod_id: str) -> FakePod | None:
        pod = self.pods.get(pod_id)
        return pod if pod is not None and self._visible(pod) else None

    def live_pods(self) -> list[FakePod]:
        """Pods not terminated yet (what the account is billed for), whether seen or not."""
        return [p for p in self.pods.values() if p.status != "TERMINATED"]

    def _visible(self, pod: FakePod) -> bool:
        """A pod being terminated is still seen, unchanged, by ``terminate_lag`` polls; then gone."""
        if pod.terminate_polls_left:
            pod.terminate_polls_left -= 1
            return True
        self.settle(pod)
        return pod.status != "TERMINATED"

    @staticmethod
    def settle(pod: FakePod) -> None:
        if pod.terminate_polls_left == 0:
            pod.status, pod.started_at = "TERMINATED", None

    # -- behaviour -----------------------------------------------------------------------------

    def gpu_view(self, gpu: dict[str, Any]) -> dict[str, Any]:
        def lowest_price(info: Any, input: dict[str, Any] | None = None) -> dict[str, Any]:
            prices = [p for p in (gpu["securePrice"], gpu["communityPrice"]) if p]
            spots = [p for p in (gpu["secureSpotPrice"], gpu["communitySpotPrice"]) if p]
            return {
                "minimumBidPrice": min(spots) if spots else None,
                "uninterruptablePrice": min(prices) if prices else None,
                "stockStatus": "High",
            }

        return {**gpu, "lowestPrice": lowest_price}

    def live_pod(self, pod_id: str) -> FakePod:
        pod = self.pods.get(pod_id)
        if pod is None or pod.status == "TERMINATED":
            raise _error(f"Pod not found: {pod_id}", "NOT_FOUND")
        return pod

    def deploy(self, data: dict[str, Any], *, spot: bool) -> FakePod:
        gpu = next((g for g in self.gpu_types if g["id"] == data.get("gpuTypeId")), None)
        if gpu is None:
            raise _error(f"invalid gpuTypeId {data.get('gpuTypeId')!r}", "BAD_USER_INPUT")
        cloud = data.get("cloudType") or "ALL"
        if cloud == "ALL":
            cloud = "SECURE" if gpu["secureCloud"] else "COMMUNITY"
        offered = gpu["secureCloud"] if cloud == "SECURE" else gpu["communityCloud"]
        if not offered or {(gpu["id"], None), (gpu["id"], cloud)} & self.no_capacity:
            raise _error(CAPACITY_MESSAGE)
        if spot:
            floor = gpu["secureSpotPrice"] if cloud == "SECURE" else gpu["communitySpotPrice"]
            if floor is None or data["bidPerGpu"] < floor:
                raise _error(CAPACITY_MESSAGE)
        pod_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(14))
        pod = FakePod(
            id=pod_id,
            name=data.get("name") or pod_id,
            gpu_type=gpu,
            gpu_count=data.get("gpuCount") or 1,
            cloud=cloud,
            spot=spot,
            bid=data.get("bidPerGpu"),
            image=data.get("imageName") or "runpod/base",
            docker_args=data.get("dockerArgs"),
            env=list(data.get("env") or []),
            container_disk_gb=data.get("containerDiskInGb") or 20,
            volume_gb=data.get("volumeInGb") or 0,
        )
        self.pods[pod_id] = pod
        return pod

    def resume(self, pod: FakePod, gpu_count: int) -> FakePod:
        if {(pod.gpu_type["id"], None), (pod.gpu_type["id"], pod.cloud)} & self.no_capacity:
            raise _error("There are not enough free GPUs on the host machine to start this pod.")
        if pod.status != "RUNNING":
            pod.status, pod.started_at = "RUNNING", time.time()
        pod.gpu_count = gpu_count
        return pod

    # -- HTTP ----------------------------------------------------------------------------------

    def _handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes]:
        record = RecordedRequest("POST", path, headers, None)
        with self._lock:
            self.requests.append(record)
            record.status, payload = self._answer(record, path, headers, raw)
            return record.status, json.dumps(payload).encode() if not isinstance(payload, bytes) else payload

    def _answer(
        self, record: RecordedRequest, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any]:
        url = urlsplit(path)
        if url.path != "/graphql":
            return 404, {"errors": [{"message": f"no route {url.path}"}]}
        if "api_key" in parse_qs(url.query):
            return 400, {"errors": [{"message": "fake: send the key in the Authorization header"}]}
        try:
            record.body = json.loads(raw or b"null")
        except ValueError:
            return 400, {"errors": [{"message": "body is not JSON", "extensions": {"code": "BAD_REQUEST"}}]}
        query = (record.body or {}).get("query") or ""
        try:
            document = parse(query)
        except GraphQLError as exc:
            return 400, {"errors": [{**exc.formatted, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]}
        record.fields = _top_fields(document)
        record.literals = _literal_arguments(document)
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            presented = auth.removeprefix("Bearer ")
            message = (
                f"Unauthorized: invalid api key {presented}" if self.echo_key_in_errors else "Unauthorized"
            )
            return 401, {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]}
        for fault in self._faults:
            if fault.remaining > 0 and (fault.field is None or fault.field in record.fields):
                fault.remaining -= 1
                return fault.status, fault.body
        errors = validate(SCHEMA, document)
        if errors:
            formatted = [{**e.formatted, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}} for e in errors]
            return 400, {"errors": formatted}
        if record.literals:
            return 400, {
                "errors": [
                    {
                        "message": f"fake: literal argument values {record.literals}; use variables",
                        "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
                    }
                ]
            }
        created = {"podFindAndDeployOnDemand", "podRentInterruptable"} & set(record.fields)
        if created and self.reject_input_with_echo:
            echoed = js_inspect(record.variables.get("input"))
            message = (
                f'Variable "$input" got invalid value {echoed}; Field "cloudType" of required type '
                '"CloudTypeEnum!" was not provided.'
            )
            return 400, {"errors": [{"message": message, "extensions": {"code": "BAD_USER_INPUT"}}]}
        if self.on_request is not None:
            try:
                self.on_request(record)
            except BaseException as exc:  # reported to the test, never to the client
                self.hook_errors.append(exc)
        result = execute(
            SCHEMA,
            document,
            root_value=self._root,
            variable_values=record.variables,
            operation_name=(record.body or {}).get("operationName"),
        )
        if result.data is None and result.errors:
            return 400, {
                "errors": [{**e.formatted, "extensions": {"code": "BAD_USER_INPUT"}} for e in result.errors]
            }
        if created and self.fail_after_create is not None and not result.errors:
            status, self.fail_after_create = self.fail_after_create, None
            return status, {"errors": [{"message": "gateway timeout"}]}
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        return 200, payload


def js_inspect(value: Any) -> str:
    """``value`` the way graphql-js's ``inspect`` prints it in error messages."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k}: {js_inspect(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(js_inspect(v) for v in value) + "]"
    if value is None:
        return "null"
    return json.dumps(value)


def _top_fields(document: Any) -> list[str]:
    return [
        selection.name.value
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
        for selection in definition.selection_set.selections
        if isinstance(selection, FieldNode)
    ]


def _literal_arguments(document: Any) -> list[str]:
    """Argument values written into the query text instead of passed as variables."""
    found: list[str] = []

    def leaves(value: Any, where: str) -> None:
        if isinstance(value, VariableNode):
            return
        if isinstance(value, ObjectValueNode):
            for item in value.fields:
                leaves(item.value, f"{where}.{item.name.value}")
        elif isinstance(value, ListValueNode):
            for item in value.values:
                leaves(item, where)
        else:
            found.append(where)

    class Arguments(Visitor):
        def enter_argument(self, node: Any, *args: Any) -> None:
            leaves(node.value, node.name.value)

    visit(document, Arguments())
    return found
