"""The machine simulator: plays the EC2 machines of a moto server for end-to-end tests.

It polls moto's SSM command list (``send_command`` is recorded there and runs nothing) and runs
each new command *exactly as sent* with ``bash`` in a temporary "machine root" (its ``$HOME``),
with the AWS endpoint pointed at moto and the IMDS endpoint (``AWS_EC2_METADATA_SERVICE_ENDPOINT``,
as the SDKs read it) at a fake IMDSv2 server of that machine (instance id, zone, spot notices
under the test's control). moto lists every instance of the region in a command's
``InstanceIds``, so the command is matched to its machine through the ``runctl <ledger id>``
comment and the instance's ``runctl:resource`` tag.

SSM registration, which moto does not model, is the simulator's: it puts a proxy in front of
moto (``api_url``, set as this process's ``AWS_ENDPOINT_URL`` while it runs, so the CLI processes
a test starts go through it) that answers ``DescribeInstanceInformation`` from its own registry
and refuses ``SendCommand`` with ``InvalidInstanceId`` until the machine has registered: a
machine registers ``register_after[k]`` seconds after it is first seen running (``k``: the order
machines boot in; ``None``: never), by default :data:`REGISTER_AFTER_S`.

A simulated machine is this machine: ``runctl`` is on its ``PATH``. By default the simulator
sets ``[remote] agent_source = "preinstalled"`` for the test (a pre-provisioned image);
``shipped_agent=True`` leaves the default (``ship``: the controller ships its wheel and the
start script installs it into the machine's own virtualenv), restricted to this machine's
platform and Python (``agent_platforms = ["host"]``) with the wheelhouse cached for the session.

With ``image`` (:func:`tests.support.machine_image.bare_image`: Debian minbase, ``python3``,
no pip, no runctl) each machine is a container of that image, started on its first command
(``--network host --pid host``, its root mounted at the same path); each command is a
``docker exec`` in it, with only the machine's own environment.

When an instance leaves ``running`` in moto (terminated or stopped through the API — by the
test, the controller or the agent's own dead-man switch), its processes get SIGTERM, as an OS
shutdown would send, then SIGKILL two seconds later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.agent_source import AgentSource
from tests.support.aws import ssm_registry
from tests.support.fake_imds import FakeImds
from tests.support.fault_proxy import FaultProxy

#: What a container machine's commands get of the simulator's environment (its own, as on EC2).
CONTAINER_ENV = ("HOME", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "RUNCTL_STATE_DIR",
                 "AWS_EC2_METADATA_SERVICE_ENDPOINT")  # fmt: skip

#: Seconds after a machine is first seen running that its SSM agent registers (real: tens).
REGISTER_AFTER_S = 0.5


@dataclass
class SimMachine:
    instance_id: str
    root: Path
    imds: FakeImds
    commands: list[subprocess.Popen[bytes]] = field(default_factory=list)
    down: bool = False

    def agent_pids(self) -> list[int]:
        pids = []
        for pid_file in self.root.rglob("agent.pid"):
            with contextlib.suppress(ValueError, OSError):
                pids.append(int(pid_file.read_text().strip()))
        return pids

    def agent_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.root.rglob("agent.log")))

    def processes(self) -> list[int]:
        """Every live process of this machine (its environment names the machine's ``$HOME``):
        the agent, the script and their children, in whatever session they put themselves."""
        marker = f"HOME={self.root}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as environ:
                    if marker in environ.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
        return found

    def running(self, fragment: str) -> bool:
        """Whether a process of this machine has ``fragment`` in its command line."""
        for pid in self.processes():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if fragment.encode() in cmdline.read():
                    return True
        return False

    def os_signal(self, sig: int) -> None:
        """What an OS shutdown does: ``sig`` to every process of the machine at once."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def signal_agents(self, sig: int, pids: list[int] | None = None) -> None:
        """``sig`` to the agents' process groups: ``pids``, else every agent the machine ran."""
        for pid in self.agent_pids() if pids is None else pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)


class MachineSimulator:
    def __init__(
        self,
        root: Path,
        endpoint: str,
        region: str = "us-east-1",
        *,
        shipped_agent: bool = False,
        machine_python: Path | None = None,
        image: str | None = None,
    ) -> None:
        import boto3

        self.root = root
        self.endpoint = endpoint
        self.region = region
        self.ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint)
        self.ssm = boto3.client("ssm", region_name=region, endpoint_url=endpoint)
        self.machines: dict[str, SimMachine] = {}
        self.seen: set[str] = set()
        self.errors: list[str] = []
        self.register_after: list[float | None] = []
        self.booted: dict[str, float] = {}  # instance id -> when first seen running (monotonic)
        self.broken_start = False  # start commands fail at once (their $HOME is not a directory)
        self.proxy = FaultProxy(endpoint)
        self.proxy.rule = ssm_registry(self.registered)
        self._endpoint_before = os.environ.get("AWS_ENDPOINT_URL")
        os.environ["AWS_ENDPOINT_URL"] = self.proxy.url
        self.shipped_agent = shipped_agent
        self.machine_python = machine_python
        self.image = image  # a bare image (tests.support.machine_image): each machine a container
        self.containers: list[str] = []
        self._agent_env = AgentSource(shipped_agent)
        _reset_runctl_clients()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @property
    def api_url(self) -> str:
        """The AWS endpoint that plays SSM registration (in front of moto)."""
        return self.proxy.url

    def registered(self, instance_id: str) -> bool:
        """Whether ``instance_id``'s SSM agent has registered (see the module docstring)."""
        if instance_id not in self.booted:
            return False
        order = list(self.booted).index(instance_id)
        delay = self.register_after[order] if order < len(self.register_after) else REGISTER_AFTER_S
        return delay is not None and time.monotonic() - self.booted[instance_id] >= delay

    def _boot_new_machines(self) -> None:
        running = self.ec2.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["running"]}]
        )["Reservations"]
        for instance in (i for r in running for i in r["Instances"]):
            self.booted.setdefault(instance["InstanceId"], time.monotonic())

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._boot_new_machines()
                self._run_new_commands()
                self._shut_down_gone_machines()
            except Exception as exc:  # keep simulating; the test reads .errors
                self.errors.append(repr(exc))
            self._stop.wait(0.2)

    def _instance_for(self, comment: str) -> dict | None:
        ledger_id = comment.removeprefix("runctl ").strip()
        found = self.ec2.describe_instances(Filters=[{"Name": "tag:runctl:resource", "Values": [ledger_id]}])
        for reservation in found["Reservations"]:
            for instance in reservation["Instances"]:
                return instance
        return None

    def machine(self, instance_id: str, zone: str = "us-east-1a") -> SimMachine:
        if instance_id not in self.machines:
            root = self.root / instance_id
            root.mkdir(parents=True, exist_ok=True)
            self.machines[instance_id] = SimMachine(
                instance_id, root, FakeImds(instance_id=instance_id, region=self.region, zone=zone)
            )
        return self.machines[instance_id]

    def _run_new_commands(self) -> None:
        for command in self.ssm.list_commands()["Commands"]:
            if command["CommandId"] in self.seen:
                continue
            self.seen.add(command["CommandId"])
            instance = self._instance_for(command.get("Comment", ""))
            if instance is None or instance["State"]["Name"] != "running":
                continue
            machine = self.machine(instance["InstanceId"], instance["Placement"]["AvailabilityZone"])
            machine.down = False  # a stopped machine started again runs commands like a new one
            script = "\n".join(command["Parameters"]["commands"])
            home = machine.root
            if self.broken_start:  # a $HOME the start script cannot enter (a file): it fails
                home = machine.root / "home-is-a-file"
                home.touch()
            env = {
                **os.environ,
                "HOME": str(home),
                "PATH": self._path(),
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": machine.imds.url,  # the SDKs' name, as on EC2
                "RUNCTL_STATE_DIR": str(machine.root / ".runctl-state"),
            }
            argv = ["bash", "-c", script]
            if self.image is not None:  # the machine is a container: only the machine's own env
                argv = self._in_container(machine, env, script)
            machine.commands.append(
                subprocess.Popen(
                    argv,
                    env=env,
                    cwd=machine.root,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def _in_container(self, machine: SimMachine, env: dict[str, str], script: str) -> list[str]:
        """``docker exec`` of the command in the machine's container (started on first use: a
        bare image, the machine's root mounted at the same path, host network and PIDs so that
        loopback servers, pid files and signals work as in host mode)."""
        name = f"runctl-sim-{machine.instance_id}-{os.getpid()}"
        if name not in self.containers:
            subprocess.run(
                ["docker", "run", "-d", "--rm", "--name", name, "--network", "host", "--pid", "host",
                 "-v", f"{self.root}:{self.root}", self.image or "", "sleep", "infinity"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            self.containers.append(name)
        keep = (*CONTAINER_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")  # the role's, played
        flags = [item for key in keep if key in env for item in ("-e", f"{key}={env[key]}")]
        return ["docker", "exec", "-w", env["HOME"], *flags, name, "bash", "-c", script]

    def _path(self) -> str:
        """A pre-provisioned machine has this runctl on its PATH; one the agent is shipped to
        has none (only the system's ``python3``, or ``machine_python`` as its only Python: the
        other ``python3.1x`` names are shadowed by stubs that fail)."""
        path = os.environ.get("PATH", "")
        if not self.shipped_agent:
            return f"{Path(sys.executable).parent}:{path}"
        venv_bin = str(Path(sys.executable).parent)
        path = ":".join(p for p in path.split(":") if p and p != venv_bin)
        if self.machine_python is None:
            return path
        bin_dir = self.root / "python-bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name in ("python3.11", "python3.12", "python3.13", "python"):
            stub = bin_dir / name
            stub.write_text("#!/bin/sh\nexit 127\n")
            stub.chmod(0o755)
        with contextlib.suppress(FileExistsError):
            (bin_dir / "python3").symlink_to(self.machine_python)
        return f"{bin_dir}:{path}"

    def _shut_down_gone_machines(self) -> None:
        live = [m for m in self.machines.values() if not m.down]
        if not live:
            return
        described = self.ec2.describe_instances(InstanceIds=[m.instance_id for m in live])
        states = {
            i["InstanceId"]: i["State"]["Name"] for r in described["Reservations"] for i in r["Instances"]
        }
        for machine in live:
            if states.get(machine.instance_id, "terminated") != "running":
                machine.down = True
                dying = machine.agent_pids()  # only these: a restarted machine's new agent lives
                machine.signal_agents(signal.SIGTERM, dying)
                threading.Timer(2.0, machine.signal_agents, args=(signal.SIGKILL, dying)).start()

    def wait_for_agent(self, timeout: float = 30) -> SimMachine:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for machine in self.machines.values():
                if machine.agent_pids():
                    return machine
            time.sleep(0.1)
        raise AssertionError(f"no agent started within {timeout}s; simulator errors: {self.errors}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._endpoint_before is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = self._endpoint_before
        _reset_runctl_clients()
        self._agent_env.restore()
        self.proxy.close()
        for machine in self.machines.values():
            machine.signal_agents(signal.SIGKILL)
            machine.imds.close()
        if self.containers:
            subprocess.run(["docker", "rm", "-f", *self.containers], capture_output=True, timeout=120)


def _reset_runctl_clients() -> None:
    """runctl's cached boto3 clients in this process follow the new endpoint."""
    from runctl.clients.aws import reset_clients

    reset_clients()
