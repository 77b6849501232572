"""``runctl s3 ...`` as a real subprocess against the moto server (and the fault proxy)."""

from __future__ import annotations

import json
import os
import pty
import sys
import urllib.request
from pathlib import Path

import pytest

from runctl.clients import aws as aws_clients
from tests.conftest import run_cli
from tests.support.fault_proxy import FaultProxy, s3_error

BUCKET = "cli-bucket"
FILES = {
    "a.txt": b"alpha",
    "empty.bin": b"",
    "sub/deeper/b.bin": os.urandom(4000),
    "ünïcødé/名前 with space.txt": "héllo".encode(),
}


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def ok_json(*args: str) -> dict:  # type: ignore[type-arg]
    result = run_cli("s3", *args, "--output", "json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # quiet: no progress bar, no chatter when piped / json
    return json.loads(result.stdout)


@pytest.fixture
def bucket(aws: str) -> str:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    return BUCKET


def test_upload_download_round_trip(bucket: str, tmp_path: Path) -> None:
    source = tree(tmp_path / "src", FILES)
    up = ok_json("upload", "--recursive", str(source), f"s3://{bucket}/data")
    assert up["transferred"] == len(FILES) and up["bytes"] == sum(map(len, FILES.values()))
    down = ok_json("download", "--recursive", f"s3://{bucket}/data", str(tmp_path / "dst"))
    assert down["transferred"] == len(FILES)
    assert read_tree(tmp_path / "dst") == FILES

    single = ok_json("upload", str(source / "a.txt"), f"s3://{bucket}/one/")
    assert single["files"] == [f"s3://{bucket}/one/a.txt"]
    ok_json("upload", str(source / "a.txt"), f"s3://{bucket}/one/renamed.txt")
    (tmp_path / "get").mkdir()
    ok_json("download", f"s3://{bucket}/one/renamed.txt", str(tmp_path / "get"))
    assert (tmp_path / "get" / "renamed.txt").read_bytes() == b"alpha"
    ok_json("download", f"s3://{bucket}/one/a.txt", str(tmp_path / "get" / "new" / "name.txt"))
    assert (tmp_path / "get" / "new" / "name.txt").read_bytes() == b"alpha"


def test_sync_both_ways_idempotent_with_delete(bucket: str, tmp_path: Path) -> None:
    source = tree(tmp_path / "src", FILES)
    assert ok_json("sync", str(source), f"s3://{bucket}/s")["transferred"] == len(FILES)
    second = ok_json("sync", str(source), f"s3://{bucket}/s")
    assert second["transferred"] == 0 and second["unchanged"] == len(FILES)

    local = tree(tmp_path / "dst", {"stale.txt": b"old"})
    ok_json("sync", f"s3://{bucket}/s", str(local))
    assert ok_json("sync", f"s3://{bucket}/s", str(local))["transferred"] == 0
    assert (local / "stale.txt").exists()
    deleted = ok_json("sync", "--delete", f"s3://{bucket}/s", str(local))
    assert deleted["deleted_files"] == ["stale.txt"]
    assert read_tree(local) == FILES

    (source / "a.txt").unlink()
    plan = ok_json("sync", "--delete", "--dry-run", str(source), f"s3://{bucket}/s")
    assert plan["dry_run"] and plan["deleted_files"] == ["s/a.txt"]
    assert [e["key"] for e in ok_json("ls", f"s3://{bucket}/s/a.txt")] == ["s/a.txt"]
    ok_json("sync", "--delete", str(source), f"s3://{bucket}/s")
    assert ok_json("ls", f"s3://{bucket}/s/a.txt") == []


def test_ls_rm_and_table_output(bucket: str, tmp_path: Path) -> None:
    tree(tmp_path / "src", FILES)
    ok_json("upload", "-r", str(tmp_path / "src"), f"s3://{bucket}/p")
    top = ok_json("ls", f"s3://{bucket}/p/")
    assert [(e["key"], e["is_dir"]) for e in top] == [
        ("p/a.txt", False),
        ("p/empty.bin", False),
        ("p/sub/", True),
        ("p/ünïcødé/", True),
    ]
    assert len(ok_json("ls", "--recursive", f"s3://{bucket}/p")) == len(FILES)
    assert [b["name"] for b in ok_json("ls")] == [bucket]
    table = run_cli("s3", "ls", f"s3://{bucket}/p/")
    assert table.returncode == 0 and "PRE" in table.stdout and "a.txt" in table.stdout

    assert ok_json("rm", f"s3://{bucket}/p/a.txt")["deleted"] == ["p/a.txt"]
    dry = ok_json("rm", "-r", "--dry-run", f"s3://{bucket}/p")
    assert len(dry["deleted"]) == len(FILES) - 1
    ok_json("rm", "-r", f"s3://{bucket}/p")
    assert ok_json("ls", "-r", f"s3://{bucket}/p") == []


def test_cleanup_keep_last_n(bucket: str, tmp_path: Path) -> None:
    client = aws_clients.client("s3")
    for step in (1, 2, 3, 4):
        client.put_object(Bucket=bucket, Key=f"run/ckpt/epoch_{step}/model.bin", Body=b"m")
        client.put_object(Bucket=bucket, Key=f"run/ckpt/epoch_{step}/opt.bin", Body=b"o")
    client.put_object(Bucket=bucket, Key="run/ckpt/train.log", Body=b"log")
    dry = ok_json("cleanup", f"s3://{bucket}/run/ckpt", "--keep-last-n", "2", "--dry-run")
    assert [g["name"] for g in dry["removed"]] == ["epoch_1", "epoch_2"]
    assert all(g["objects"] == 2 for g in dry["removed"])
    assert len(ok_json("ls", "-r", f"s3://{bucket}/run/ckpt")) == 9
    ok_json("cleanup", f"s3://{bucket}/run/ckpt", "--keep-last-n", "2")
    keys = [e["key"] for e in ok_json("ls", "-r", f"s3://{bucket}/run/ckpt")]
    assert keys == [
        "run/ckpt/epoch_3/model.bin",
        "run/ckpt/epoch_3/opt.bin",
        "run/ckpt/epoch_4/model.bin",
        "run/ckpt/epoch_4/opt.bin",
        "run/ckpt/train.log",
    ]
    bad = run_cli("s3", "cleanup", f"s3://{bucket}/run/ckpt", "--keep-last-n", "0")
    assert bad.returncode == 65 and "at least 1" in bad.stderr


def test_presign_gives_a_working_url(bucket: str, tmp_path: Path) -> None:
    aws_clients.client("s3").put_object(Bucket=bucket, Key="shared/x.bin", Body=b"shared bytes")
    url = ok_json("presign", f"s3://{bucket}/shared/x.bin", "--expires", "10m")["url"]
    assert "X-Amz-Signature" in url and "X-Amz-Expires=600" in url
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"shared bytes"
    put_url = ok_json("presign", "--put", f"s3://{bucket}/shared/new.bin")["url"]
    headers = {"Content-Type": "application/octet-stream"}
    urllib.request.urlopen(
        urllib.request.Request(put_url, data=b"new", method="PUT", headers=headers)
    ).close()
    assert aws_clients.client("s3").get_object(Bucket=bucket, Key="shared/new.bin")["Body"].read() == b"new"
    too_long = run_cli("s3", "presign", f"s3://{bucket}/shared/x.bin", "--expires", "8d")
    assert too_long.returncode == 64 and "7 days" in too_long.stderr
    missing = run_cli("s3", "presign", f"s3://{bucket}/shared/nope")
    assert missing.returncode == 66 and "does not exist" in missing.stderr


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["upload", "{tmp}/f.txt", "s3://"], 64, "has no bucket name"),
        (["upload", "{tmp}/f.txt", "s3:///x"], 64, "has no bucket name"),
        (["upload", "{tmp}/missing.txt", "s3://cli-bucket/x"], 66, "does not exist"),
        (
            ["upload", "{tmp}/f.txt", "s3://no-such-bucket-here/x"],
            66,
            "bucket s3://no-such-bucket-here does not exist",
        ),
        (["upload", "{tmp}/f.txt", "s3://Bad_Name/x"], 65, "capital letters"),
        (["upload", "{tmp}", "s3://cli-bucket/x"], 64, "--recursive"),
        (["download", "s3://cli-bucket/nope.txt", "{tmp}/out.txt"], 66, "does not exist"),
        (["download", "s3://cli-bucket", "{tmp}/out"], 64, "no object"),
        (["sync", "{tmp}", "{tmp}/other"], 64, "one local directory and one s3://"),
        (["ls", "s3://no-such-bucket-here/"], 66, "does not exist"),
        (["rm", "s3://cli-bucket/nope"], 66, "does not exist"),
    ],
)
def test_bad_input_is_a_clear_error(
    bucket: str, tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    (tmp_path / "f.txt").write_text("x")
    result = run_cli("s3", *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert result.returncode == code, result.stderr
    assert says in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]  # nothing written


def test_destination_that_is_a_file(bucket: str, tmp_path: Path) -> None:
    aws_clients.client("s3").put_object(Bucket=bucket, Key="d/x.txt", Body=b"x")
    (tmp_path / "file").write_text("mine")
    result = run_cli("s3", "download", "-r", f"s3://{bucket}/d", str(tmp_path / "file"))
    assert result.returncode == 65 and "is a file" in result.stderr
    nested = run_cli("s3", "download", f"s3://{bucket}/d/x.txt", str(tmp_path / "file" / "x.txt"))
    assert nested.returncode == 65 and "is a file" in nested.stderr
    assert (tmp_path / "file").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_traversal_key_is_refused_by_download(bucket: str, tmp_path: Path) -> None:
    aws_clients.client("s3").put_object(Bucket=bucket, Key="t/../../escape.txt", Body=b"evil")
    result = run_cli("s3", "download", "-r", f"s3://{bucket}/t", str(tmp_path / "dest"))
    assert result.returncode == 65 and "unsafe key" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_access_denied(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    fault_proxy.rule = lambda _r: s3_error("AccessDenied", 403)  # type: ignore[assignment]
    (tmp_path / "f.txt").write_text("x")
    result = run_cli("s3", "upload", str(tmp_path / "f.txt"), f"s3://{BUCKET}/x")
    assert result.returncode == 77 and "refused" in result.stderr and "IAM" in result.stderr


def test_throttled_upload_succeeds(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    left = [3]

    def rule(request: object) -> object:
        if getattr(request, "method", "") == "PUT" and left[0] > 0:
            left[0] -= 1
            return s3_error("SlowDown", 503)
        return None

    fault_proxy.rule = rule  # type: ignore[assignment]
    tree(tmp_path / "src", FILES)
    result = run_cli("s3", "upload", "-r", str(tmp_path / "src"), f"s3://{BUCKET}/t", "-o", "json")
    assert result.returncode == 0 and json.loads(result.stdout)["transferred"] == len(FILES)
    assert result.stderr.count("SlowDown") == 3 and "retrying" in result.stderr  # each retry is logged
    assert fault_proxy.injected == 3
    fault_proxy.rule = None
    ok_json("download", "-r", f"s3://{BUCKET}/t", str(tmp_path / "back"))
    assert read_tree(tmp_path / "back") == FILES


def test_progress_bar_only_on_a_terminal(bucket: str, tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(os.urandom(200_000))
    piped = run_cli("s3", "upload", str(tmp_path / "f.bin"), f"s3://{bucket}/f.bin")
    assert piped.returncode == 0 and piped.stderr == "" and "uploaded 1 file(s)" in piped.stdout
    # on a terminal the bar is drawn on stderr (transient: erased when done)
    pid, fd = pty.fork()
    if pid == 0:  # child: stdin/stdout/stderr are the pty
        os.execvpe(
            sys.executable,
            [sys.executable, "-m", "runctl", "s3", "upload", str(tmp_path / "f.bin"), f"s3://{bucket}/g.bin"],
            {**os.environ, "COLUMNS": "120", "TERM": "xterm"},
        )
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = out.decode(errors="replace")
    assert "uploaded 1 file(s)" in text and "\x1b[?25l" in text  # rich drew (and erased) the bar
