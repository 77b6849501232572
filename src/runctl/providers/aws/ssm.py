"""Starting a command on an EC2 machine through SSM RunCommand, once the machine can take it.

Real SSM answers ``SendCommand`` with ``InvalidInstanceId`` until the machine's SSM agent has
registered (tens of seconds after boot, minutes for large AMIs); sent at once after
``RunInstances`` the command would fail and the job with it. :func:`send_when_registered`:

1. waits for the instance to be ``running`` (a dead end — terminated, a spot reclaim — stops
   the wait at once);
2. from then on, for at most ``timeout`` (``[remote] agent_start_timeout``), waits for it to be
   registered with SSM: ``DescribeInstanceInformation`` filtered by its id shows ``PingStatus``
   ``Online``. Without permission to ask (``ssm:DescribeInstanceInformation`` denied) it goes
   straight to step 3;
3. sends the command, retrying ``InvalidInstanceId`` (registration can show before SendCommand
   takes it) until the same deadline.

Past the deadline it raises :class:`ResourceError` naming the machine, the last SSM state and
the usual causes; the caller records ``failed_setup`` and releases the machine.
:func:`command_report` reads back what the command printed, for a start that failed.
"""

from __future__ import annotations

import time
from typing import Any

from runctl.core.errors import AuthError, ResourceError, RunctlError
from runctl.providers.aws import ec2
from runctl.providers.aws.context import AwsContext, error_code

NOT_REGISTERED = "InvalidInstanceId"
HINT = (
    "the machine's SSM agent did not register: the image needs the SSM agent (Amazon Linux, "
    "Ubuntu and the Deep Learning AMIs have it), the instance profile needs "
    "AmazonSSMManagedInstanceCore, and the subnet needs a route to SSM; or raise "
    "[remote] agent_start_timeout for a slow image"
)


def send_when_registered(
    ctx: AwsContext,
    instances: ec2.Instances,
    instance_id: str,
    *,
    script: str,
    comment: str,
    timeout: float,
) -> str:
    """Send ``script`` as an ``AWS-RunShellScript`` command once SSM takes it; the command id."""
    instances.wait(instance_id, "running")
    deadline = time.monotonic() + timeout
    state = _wait_registered(ctx, instance_id, deadline, timeout)
    attempt = 0
    while True:
        attempt += 1
        try:
            answer = ctx.call(
                "send_command",
                service="ssm",
                operation=f"start command on {instance_id}",
                resource_id=instance_id,
                InstanceIds=[instance_id],
                DocumentName="AWS-RunShellScript",
                Comment=comment,
                Parameters={"commands": [script]},
            )
            return str(answer["Command"]["CommandId"])
        except RunctlError as exc:
            if error_code(exc) != NOT_REGISTERED:
                raise
            state = "not yet accepted by SSM (InvalidInstanceId)"
            pause = ctx.poll.backoff(attempt)
            if time.monotonic() + pause > deadline:
                raise _timed_out(instance_id, state, timeout) from exc
            time.sleep(pause)


def _wait_registered(ctx: AwsContext, instance_id: str, deadline: float, timeout: float) -> str:
    def probe() -> tuple[bool, str]:
        listed = ctx.call(
            "describe_instance_information",
            service="ssm",
            operation=f"look up the SSM registration of {instance_id}",
            resource_id=instance_id,
            Filters=[{"Key": "InstanceIds", "Values": [instance_id]}],
        )
        found = [i for i in listed.get("InstanceInformationList", []) if i.get("InstanceId") == instance_id]
        status = str(found[0].get("PingStatus")) if found else "not registered"
        return status == "Online", f"SSM {status}"

    try:
        return ctx.wait_until(
            probe,
            what="SSM registration",
            resource_id=instance_id,
            timeout=max(0.0, deadline - time.monotonic()),
        )
    except AuthError:
        ctx.progress(f"cannot see {instance_id}'s SSM registration (not allowed): sending and retrying")
        return "SSM registration unknown"
    except ResourceError as exc:
        if exc.resource_state is None or not exc.resource_state.startswith("SSM "):
            raise
        raise _timed_out(instance_id, exc.resource_state, timeout) from exc


def _timed_out(instance_id: str, state: str, timeout: float) -> ResourceError:
    return ResourceError(
        f"{instance_id} could not take the start command within [remote] agent_start_timeout "
        f"({timeout:g}s after it was running): {state}",
        resource_id=instance_id,
        resource_state=state,
        operation="start the agent through SSM",
        hint=HINT,
    )


def command_report(ctx: AwsContext, command_id: str, instance_id: str) -> str:
    """What SSM knows of the start command on ``instance_id``: its status and the end of its
    output and error streams (SSM keeps the first 24,000 characters of each)."""
    try:
        found: Any = ctx.call(
            "get_command_invocation",
            service="ssm",
            operation=f"read the start command's output on {instance_id}",
            resource_id=instance_id,
            CommandId=command_id,
            InstanceId=instance_id,
        )
    except RunctlError as exc:
        return f"SSM command {command_id}: output unavailable ({exc})"
    parts = [f"SSM command {command_id}: {found.get('Status', 'unknown')}"]
    if (code := found.get("ResponseCode")) not in (None, -1):
        parts.append(f"exit code {code}")
    for label, key in (("stdout", "StandardOutputContent"), ("stderr", "StandardErrorContent")):
        if text := (found.get(key) or "").strip():
            parts.append(f"{label}: {text[-500:]}")
    return "; ".join(parts)
