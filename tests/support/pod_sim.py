"""The pod simulator: plays RunPod's containers for the fake GraphQL server.

Each pod the fake server has created and reports RUNNING has its start command (``dockerArgs``,
split like a shell, as RunPod does) run for real, with the pod's ``env``, ``RUNPOD_POD_ID`` and
a temporary home. When the command exits the pod turns EXITED (the container stopped); when
the pod stops or is terminated through the API the container is killed at once (RunPod gives
no interruption notice).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.support.agent_source import AgentSource
from tests.support.fake_runpod import FakePod, FakeRunpod


class PodSimulator:
    def __init__(self, fake: FakeRunpod, root: Path, *, shipped_agent: bool = False) -> None:
        self.shipped_agent = shipped_agent
        self._agent_env = AgentSource(shipped_agent)  # see tests.support.machine_sim
        self.fake = fake
        self.root = root
        self.containers: dict[str, subprocess.Popen[bytes]] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # keep simulating; the test reads .errors
                self.errors.append(repr(exc))
            self._stop.wait(0.2)

    def _step(self) -> None:
        for pod in list(self.fake.pods.values()):
            container = self.containers.get(pod.id)
            if container is None and pod.status == "RUNNING" and pod.docker_args:
                self.containers[pod.id] = self._start(pod)
            elif container is not None and container.poll() is None and pod.status != "RUNNING":
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(container.pid, signal.SIGKILL)  # no notice on RunPod
            elif container is not None and container.poll() is not None and pod.status == "RUNNING":
                pod.status, pod.started_at = "EXITED", None  # the container's command ended

    def _start(self, pod: FakePod) -> subprocess.Popen[bytes]:
        home = self.root / pod.id
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **{e["key"]: e["value"] for e in pod.env},
            "HOME": str(home),
            "PATH": self._path(),
            "RUNPOD_POD_ID": pod.id,
            "RUNCTL_STATE_DIR": str(home / ".runctl-state"),
        }
        env.pop("RUNPOD_API_KEY", None)
        return subprocess.Popen(
            shlex.split(pod.docker_args or ""),
            env=env,
            cwd=home,
            start_new_session=True,
            stdout=(home / "container.log").open("wb"),
            stderr=subprocess.STDOUT,
        )

    def _path(self) -> str:
        """This runctl on the container's PATH, unless the agent is shipped to it."""
        venv_bin = str(Path(sys.executable).parent)
        path = [p for p in os.environ.get("PATH", "").split(":") if p and p != venv_bin]
        return ":".join(path if self.shipped_agent else [venv_bin, *path])

    def running(self) -> list[str]:
        return [pod_id for pod_id, c in self.containers.items() if c.poll() is None]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._agent_env.restore()
        for container in self.containers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(container.pid, signal.SIGKILL)
            container.wait()
