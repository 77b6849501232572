"""Spot notice → checkpoint in storage: how long after EC2 announces the reclaim is a 1 GiB
checkpoint safe in S3?

``runctl agent run --watch-spot`` (a subprocess, exactly what a spot machine runs) runs
benchmarks/save_on_sigterm.py holding 1 GiB of state, with its storage in a bucket on a moto
server (``ThreadedMotoServer`` on loopback) and IMDS played by tests/support/fake_imds.py. Once
the script is ready, the fake IMDS starts answering ``spot/instance-action``; the clock runs from
that moment until the checkpoint's manifest (written last, after every part) is listed in the
bucket. That span is: the agent's next IMDS poll, SIGTERM to the script, the script saving
1 GiB to local disk, then the upload. The agent polls every 5 s (as AWS recommends), so how long
a notice waits to be seen is luck; the notice is placed halfway between two polls (the agent's
poll is watched on the fake IMDS), the average wait for a notice that comes at a random moment.

The parts are reported apart: ``notice → seen`` (the first poll after the notice), ``seen →
saved`` (the checkpoint file appeared, renamed into place, in the agent's work directory) and
``saved → stored`` (runctl's upload and manifest). Afterwards the run is checked: agent exit
143, ``status.json`` says ``preempted``, the manifest's size is the file's, or the benchmark fails.

The peer floor: ``aws s3 cp`` (awscli, in benchmarks/.peers) of the very same checkpoint file
to the same server: the upload alone, with nothing to notice and nothing to save. Ratios:
runctl's notice → in-storage time ÷ that upload, and runctl's own upload (saved → stored) ÷ it.
One run by default (``--runs N`` for a median); objects are deleted after each step (moto keeps
them in memory) and the files live in a temporary directory under /tmp, removed at the end.

    ./dev bench spot              # or: python benchmarks/run.py [--quick] spot
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_s3 import empty_bucket  # bucket "bench", like BUCKET here
from benchmarks.common import (
    SAVE_ON_SIGTERM,
    Ratio,
    peer_bin,
    print_table,
    runctl_bin,
    wait_for_file,
    write_results,
)
from runctl.agent.runner import AgentOptions
from runctl.core.checkpoints import is_complete_name

MiB = 1 << 20
BUCKET = "bench"
IMDS_POLL = "GET /latest/meta-data/spot/instance-action"
AGENT_POLL_S = AgentOptions.spot_poll_interval  # how often the agent asks IMDS


def agent_run(size_mib: int, work: Path, env: dict[str, str], client: Any, attempt: int) -> dict[str, Any]:
    """One spot interruption of the agent; returns timings and the checkpoint file it left."""
    from tests.support.fake_imds import FakeImds

    job = f"j-spot{attempt:04d}"
    ready, workdir = work / "ready", work / f"agent-{attempt}"
    checkpoints = workdir / "checkpoints"
    manifests = f"jobs/{job}/checkpoints/.runctl-manifests/"
    argv = [*runctl_bin(), "agent", "run", str(SAVE_ON_SIGTERM), "--job-id", job]
    argv += ["--storage", f"s3://{BUCKET}/jobs/{job}", "--workdir", str(workdir), "--grace-period", "600s"]
    imds = FakeImds()
    argv += ["--watch-spot", "--imds-endpoint", imds.url, "--", str(size_mib), str(ready)]
    log_path = work / f"agent-{attempt}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log)

    def fail(why: str) -> SystemExit:
        return SystemExit(f"{why}; the agent's stderr ends with:\n{log_path.read_bytes()[-2000:].decode()}")

    try:
        wait_for_file(ready, proc)
        polls, deadline = imds.requests.count(IMDS_POLL), time.monotonic() + 10 * AGENT_POLL_S
        while imds.requests.count(IMDS_POLL) == polls:  # the agent's next poll, then half a period
            if proc.poll() is not None or time.monotonic() > deadline:
                raise fail(f"the agent did not poll IMDS (exit status {proc.poll()})")
            time.sleep(0.005)
        time.sleep(AGENT_POLL_S / 2)
        polls_before = len(imds.requests)
        imds.schedule_interruption(action="terminate", in_seconds=120)
        notice = time.monotonic()
        seen = saved = stored = None
        next_list, deadline = notice, notice + 600
        while stored is None:
            now = time.monotonic()
            if seen is None and IMDS_POLL in imds.requests[polls_before:]:
                seen = now
            if saved is None and any(is_complete_name(p.name) for p in checkpoints.glob("*")):
                saved = now
            if now >= next_list:
                if client.list_objects_v2(Bucket=BUCKET, Prefix=manifests).get("KeyCount", 0):
                    stored = now
                next_list = now + 0.1
            if stored is None and (proc.poll() is not None or now > deadline):
                raise fail(f"no checkpoint in storage (agent exit status {proc.poll()})")
            time.sleep(0.01)
        code = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        imds.close()
    status = json.loads(client.get_object(Bucket=BUCKET, Key=f"jobs/{job}/status.json")["Body"].read())
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=manifests)["Contents"]
    manifest = json.loads(client.get_object(Bucket=BUCKET, Key=listed[0]["Key"])["Body"].read())
    checkpoint = checkpoints / manifest["name"]
    if code != 143 or status.get("state") != "preempted":
        raise fail(f"agent exited {code}, status {status.get('state')!r} (expected 143, preempted)")
    stored_size = int(manifest["size"])
    if not checkpoint.is_file() or stored_size != checkpoint.stat().st_size or stored_size < size_mib * MiB:
        raise SystemExit(f"the stored checkpoint {manifest['name']} is not the {size_mib} MiB file")
    empty_bucket(env)
    seen, saved = seen or notice, saved or stored  # not caught between two polls: count as 0
    return {
        "notice_to_seen_s": seen - notice,
        "seen_to_saved_s": saved - seen,
        "saved_to_stored_s": stored - saved,
        "total_s": stored - notice,
        "file": checkpoint,
    }


def aws_upload(path: Path, env: dict[str, str], client: Any) -> float:
    """``aws s3 cp`` of ``path`` into the bucket, as a person would type it; checked by size."""
    argv = [
        str(peer_bin("aws")),
        "s3",
        "cp",
        "--only-show-errors",
        str(path),
        f"s3://{BUCKET}/peer/{path.name}",
    ]
    started = time.perf_counter()
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"aws s3 cp failed ({done.returncode}): {done.stderr[-2000:]}")
    if client.head_object(Bucket=BUCKET, Key=f"peer/{path.name}")["ContentLength"] != path.stat().st_size:
        raise SystemExit("aws s3 cp stored an object of the wrong size")
    empty_bucket(env)
    return seconds


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 128 MiB checkpoint")
    parser.add_argument("--size-mib", type=int, help="checkpoint size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=1, help="runs (median; default 1)")
    args = parser.parse_args(argv or [])
    size = args.size_mib or (128 if args.quick else 1024)
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log
    peer_bin("aws")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }  # fmt: skip
    client = boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="runctl-bench-spot-") as tmp:
            work = Path(tmp)
            for attempt in range(args.runs):
                run = agent_run(size, work, env, client, attempt)
                run["aws_s"] = aws_upload(run.pop("file"), env, client)
                print(
                    f"  run {attempt + 1}: " + "  ".join(f"{k} {v:.2f}" for k, v in run.items()), flush=True
                )
                runs.append(run)
    finally:
        server.stop()
    row: dict[str, object] = {"size_mib": size, "runs": args.runs}
    for key in runs[0]:
        row[key] = round(statistics.median(r[key] for r in runs), 3)
    row["ratio"] = round(float(row["total_s"]) / float(row["aws_s"]), 3)  # type: ignore[arg-type]
    row["upload_ratio"] = round(float(row["saved_to_stored_s"]) / float(row["aws_s"]), 3)  # type: ignore[arg-type]
    print_table(
        f"Spot notice → checkpoint in S3, {size} MiB on moto (median s; ratios ÷ aws s3 cp)",
        ["notice → seen", "seen → saved", "saved → stored", "notice → stored", "aws s3 cp", "ratio",
         "upload ratio"],
        [[row["notice_to_seen_s"], row["seen_to_saved_s"], row["saved_to_stored_s"], row["total_s"],
          row["aws_s"], row["ratio"], row["upload_ratio"]]],
    )  # fmt: skip
    write_results("spot", [row])
    return [row]


def ratios(rows: list[dict[str, object]]) -> list[Ratio]:
    """Notice → in storage, and runctl's upload alone (saved → in storage), ÷ `aws s3 cp`."""
    (row,) = rows
    size = f"{row['size_mib']} MiB"
    return [
        Ratio("spot", f"notice → checkpoint in S3, {size}", f"{row['total_s']} s", "aws s3 cp (upload only)",
              f"{row['aws_s']} s", float(row["ratio"])),  # type: ignore[arg-type]
        Ratio("spot", f"upload of the saved checkpoint, {size}", f"{row['saved_to_stored_s']} s",
              "aws s3 cp (upload only)", f"{row['aws_s']} s", float(row["upload_ratio"])),  # type: ignore[arg-type]
    ]  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
