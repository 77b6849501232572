"""How the simulators' machines get their agent: pre-provisioned (``runctl`` on PATH) by
default, or shipped by the controller (``[remote] agent_source = "ship"``), the wheelhouse
restricted to this machine and cached once per test session (building it takes seconds)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SESSION_CACHE = Path(tempfile.gettempdir()) / f"runctl-test-agent-cache-{os.getuid()}"

_VARS = ("RUNCTL_REMOTE__AGENT_SOURCE", "RUNCTL_REMOTE__AGENT_PLATFORMS", "RUNCTL_REMOTE__AGENT_CACHE_DIR")


class AgentSource:
    """Sets the controller's ``[remote]`` agent keys for a simulator's lifetime."""

    def __init__(self, shipped: bool) -> None:
        self._before = {name: os.environ.get(name) for name in _VARS}
        if shipped:
            os.environ["RUNCTL_REMOTE__AGENT_SOURCE"] = "ship"
            os.environ["RUNCTL_REMOTE__AGENT_PLATFORMS"] = '["host"]'
            os.environ["RUNCTL_REMOTE__AGENT_CACHE_DIR"] = str(SESSION_CACHE)
        else:
            os.environ.setdefault("RUNCTL_REMOTE__AGENT_SOURCE", "preinstalled")

    def restore(self) -> None:
        for name, value in self._before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
