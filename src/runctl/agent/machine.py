"""The agent's hold on its own machine: the dead-man switch that stops the bill.

When the job ends (unless ``--keep``), when ``max_duration`` passes, or after ``idle_timeout``
with nothing to do, the agent stops or terminates the machine it runs on — through the
provider's API, so a lost controller never leaves a machine billing. On EC2 the instance id and
region come from IMDSv2 and the call is ``stop_instances`` / ``terminate_instances`` with the
instance's own role. Off a cloud machine (``runctl local``, tests without IMDS) there is nothing
to stop and :class:`NoMachine` says so.
"""

from __future__ import annotations

import logging
from typing import Protocol

from runctl.agent.imds import Imds

log = logging.getLogger("runctl.agent.machine")


class MachineControl(Protocol):
    def describe(self) -> dict[str, str]: ...
    def shut_down(self, action: str) -> None: ...


class NoMachine:
    """Not on a cloud machine: nothing to describe or stop."""

    def describe(self) -> dict[str, str]:
        import socket

        return {"host": socket.gethostname()}

    def shut_down(self, action: str) -> None:
        log.info("dead-man switch: not on a cloud machine, nothing to %s", action)


class Ec2Machine:
    """This EC2 instance, known through IMDSv2, stopped or terminated through the EC2 API."""

    def __init__(self, imds: Imds) -> None:
        self.imds = imds
        self.instance_id = imds.get("instance-id") or ""
        self.region = imds.get("placement/region")

    def describe(self) -> dict[str, str]:
        return {
            "instance_id": self.instance_id,
            "zone": self.imds.get("placement/availability-zone") or "",
            "lifecycle": self.imds.get("instance-life-cycle") or "",
        }

    def shut_down(self, action: str) -> None:
        """Stop or terminate this instance. A stop is sent only to a running instance: once the
        controller has released it (terminating), stopping it again would be at best an error
        and, on an API that does not check the state, would bring back a stopped machine."""
        from runctl.clients import aws as session

        ec2 = session.client("ec2", self.region)
        if action == "stop":
            found = session.call(
                ec2.describe_instances, operation="describe own instance", InstanceIds=[self.instance_id]
            )
            states = [
                i["State"]["Name"] for r in found.get("Reservations", []) for i in r.get("Instances", [])
            ]
            if not set(states) & {"pending", "running"}:
                log.info("dead-man switch: instance %s is already %s", self.instance_id, states or "gone")
                return
        method = ec2.terminate_instances if action == "terminate" else ec2.stop_instances
        log.warning("dead-man switch: %s instance %s", action, self.instance_id)
        session.call(method, operation=f"{action} own instance", InstanceIds=[self.instance_id])
