"""S3 storage against a moto server on loopback (AWS_ENDPOINT_URL), through real boto3 and HTTP.

Faults (throttling, refused access, corrupted answers) are injected by the fault proxy in front
of moto, so every byte still crosses a real socket."""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from runctl.clients import aws as aws_clients
from runctl.core.errors import AuthError, NotFoundError, RetryExhaustedError, ValidationError
from runctl.storage import checksums
from runctl.storage.base import Storage
from runctl.storage.local import LocalStorage
from runctl.storage.s3 import S3Storage
from runctl.storage.sync import download_tree, upload_tree
from runctl.storage.transfer import ChecksumMismatchError, MiB, TransferSettings
from tests.support.fault_proxy import Fault, FaultProxy, Request, s3_error

BUCKET = "runctl-test"
# small parts so multipart paths run on small files (5 MiB is S3's minimum part size)
SMALL = TransferSettings(
    multipart_threshold=5 * MiB, part_size=5 * MiB, max_concurrency=4, max_attempts=4, min_range=5 * MiB
)

FILES = {
    "a.txt": b"alpha",
    "empty.bin": b"",
    "sub/deeper/b.bin": os.urandom(3000),
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


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def s3(aws: str) -> object:
    client = aws_clients.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def store(s3: object) -> S3Storage:
    return S3Storage(f"s3://{BUCKET}/run", settings=SMALL)


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """The same contract, checked on both implementations."""
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    request.getfixturevalue("s3")
    return S3Storage(f"s3://{BUCKET}/run", settings=SMALL)


# ---- the contract, on both implementations -------------------------------------------------


def test_contract_bytes_json_list_delete(any_store: Storage) -> None:
    any_store.put_bytes("jobs/j-1/status.json", b"{}")
    any_store.write_json("jobs/j-1/status.json", {"state": "running"})
    assert any_store.read_json("jobs/j-1/status.json") == {"state": "running"}
    assert any_store.read_json("jobs/j-1/nothing.json") is None
    with pytest.raises(NotFoundError):
        any_store.get_bytes("jobs/j-1/nothing.json")
    any_store.put_bytes("jobs/j-1/logs/0001.log", b"line\n")
    assert any_store.stat("jobs/j-1/logs/0001.log").size == 5  # type: ignore[union-attr]
    assert any_store.stat("jobs/j-1/logs/9999.log") is None
    shallow = [(o.key, o.is_dir) for o in any_store.list("jobs/j-1/", recursive=False)]
    assert shallow == [("jobs/j-1/logs/", True), ("jobs/j-1/status.json", False)]
    any_store.delete(["jobs/j-1/logs/0001.log", "jobs/j-1/never"])
    assert [o.key for o in any_store.list()] == ["jobs/j-1/status.json"]


def test_contract_round_trip_files_is_byte_identical(any_store: Storage, tmp_path: Path) -> None:
    source = tree(tmp_path / "src", {**FILES, "big.bin": os.urandom(12 * MiB + 123)})
    upload_tree(source, any_store, "tree")
    download_tree(any_store, "tree", tmp_path / "dst")
    assert read_tree(tmp_path / "dst") == read_tree(source)


def test_contract_interrupted_publish_is_never_latest(any_store: Storage, tmp_path: Path) -> None:
    src = tree(tmp_path / "c", {"step_1/w.bin": b"1", "step_2/w.bin": b"2", "step_2/missing.bin": b"x"})
    any_store.publish_checkpoint(src / "step_1", "ckpt")
    (src / "step_2" / "missing.bin").unlink()
    upload_only_first = src / "step_2"
    # the upload of step_2 dies half way: its first file is stored, its manifest never written
    any_store.put_file("ckpt/step_2/w.bin", upload_only_first / "w.bin")
    latest = any_store.latest_checkpoint("ckpt")
    assert latest is not None and latest.name == "step_1"


# ---- S3 specifics ------------------------------------------------------------------------


def test_multipart_upload_and_verified_ranged_download(store: S3Storage, tmp_path: Path, s3: object) -> None:
    data = os.urandom(12 * MiB + 5)
    (tmp_path / "big.bin").write_bytes(data)
    info = store.put_file("big.bin", tmp_path / "big.bin")
    assert info.etag is not None and info.etag.endswith("-3")  # 3 parts of 5 MiB
    parts = [md5(data[i : i + 5 * MiB]) for i in range(0, len(data), 5 * MiB)]
    assert info.etag == hashlib.md5(b"".join(bytes.fromhex(p) for p in parts)).hexdigest() + "-3"
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []  # type: ignore[attr-defined]
    store.get_file("big.bin", tmp_path / "out" / "big.bin")
    assert (tmp_path / "out" / "big.bin").read_bytes() == data
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["big.bin"]  # no temp file left


def test_every_upload_stores_its_crc32(store: S3Storage, tmp_path: Path, s3: object) -> None:
    small, big = os.urandom(1000), os.urandom(11 * MiB)
    (tmp_path / "small.bin").write_bytes(small)
    (tmp_path / "big.bin").write_bytes(big)
    store.put_file("small.bin", tmp_path / "small.bin")
    store.put_file("big.bin", tmp_path / "big.bin")  # multipart: 5 MiB parts
    store.put_bytes("status.json", b"{}")
    for key, data in (("small.bin", small), ("big.bin", big), ("status.json", b"{}")):
        head = s3.head_object(Bucket=BUCKET, Key=f"run/{key}")  # type: ignore[attr-defined]
        assert head["Metadata"][checksums.METADATA_KEY] == f"{zlib.crc32(data):08x}", key


def test_foreign_multipart_object_is_checked_part_by_part(
    store: S3Storage, tmp_path: Path, s3: object
) -> None:
    """No stored CRC-32 (another tool wrote it): the parts' MD5s are checked against the ETag."""
    data = os.urandom(11 * MiB)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="run/foreign.bin")  # type: ignore[attr-defined]
    parts = []
    for number, start in enumerate(range(0, len(data), 5 * MiB), 1):
        answer = s3.upload_part(  # type: ignore[attr-defined]
            Bucket=BUCKET, Key="run/foreign.bin", UploadId=upload["UploadId"], PartNumber=number,
            Body=data[start : start + 5 * MiB],
        )  # fmt: skip
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    s3.complete_multipart_upload(  # type: ignore[attr-defined]
        Bucket=BUCKET, Key="run/foreign.bin", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    store.get_file("foreign.bin", tmp_path / "foreign.bin")
    assert (tmp_path / "foreign.bin").read_bytes() == data


def test_large_single_part_object_downloads_in_ranges(store: S3Storage, tmp_path: Path, s3: object) -> None:
    data = os.urandom(11 * MiB)
    s3.put_object(Bucket=BUCKET, Key="run/plain.bin", Body=data)  # type: ignore[attr-defined]
    store.get_file("plain.bin", tmp_path / "plain.bin")
    assert (tmp_path / "plain.bin").read_bytes() == data


def test_more_than_1000_keys(store: S3Storage, tmp_path: Path) -> None:
    names = {f"f{i:05d}.txt": str(i).encode() for i in range(1003)}
    source = tree(tmp_path / "many", names)
    upload_tree(source, store, "many")
    listed = [o.key for o in store.list("many/")]
    assert len(listed) == 1003 and listed == sorted(listed)
    assert upload_tree(source, store, "many").transferred == []
    download_tree(store, "many", tmp_path / "back")
    assert read_tree(tmp_path / "back") == names
    store.delete(listed)
    assert list(store.list("many/")) == []


def test_sync_idempotence_and_mtimes(store: S3Storage, tmp_path: Path) -> None:
    source = tree(tmp_path / "src", FILES)
    assert len(upload_tree(source, store, "s").transferred) == len(FILES)
    second = upload_tree(source, store, "s")
    assert second.transferred == [] and second.unchanged == len(FILES)
    download_tree(store, "s", tmp_path / "dst")
    again = download_tree(store, "s", tmp_path / "dst")
    assert again.transferred == [] and again.unchanged == len(FILES)
    # touched but identical: skipped by ETag, and its mtime fixed
    touched = tmp_path / "dst" / "a.txt"
    os.utime(touched, (1_000_000, 1_000_000))
    assert download_tree(store, "s", tmp_path / "dst").transferred == []
    assert touched.stat().st_mtime > 1_000_000


def test_traversal_keys_are_refused_before_anything_is_written(
    store: S3Storage, s3: object, tmp_path: Path
) -> None:
    s3.put_object(Bucket=BUCKET, Key="run/t/ok.txt", Body=b"ok")  # type: ignore[attr-defined]
    for evil in ("run/t/../../evil.txt", "run/t/a/../../../evil.txt", "run/t//abs.txt"):
        s3.put_object(Bucket=BUCKET, Key=evil, Body=b"evil")  # type: ignore[attr-defined]
        with pytest.raises(ValidationError, match="unsafe key"):
            download_tree(store, "t", tmp_path / "dest")
        s3.delete_object(Bucket=BUCKET, Key=evil)  # type: ignore[attr-defined]
        assert not (tmp_path / "dest").exists() and not (tmp_path / "evil.txt").exists()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "link").symlink_to(outside)
    s3.put_object(Bucket=BUCKET, Key="run/t/link/x.txt", Body=b"x")  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="resolves to"):
        download_tree(store, "t", tmp_path / "dest")
    assert list(outside.iterdir()) == [] and not (tmp_path / "dest" / "ok.txt").exists()


def test_keep_last_n_on_s3(store: S3Storage, tmp_path: Path) -> None:
    src = tmp_path / "c"
    for step in (100, 200, 300):
        tree(src, {f"ckpt-{step:08d}.pt": os.urandom(100)})
        store.publish_checkpoint(src / f"ckpt-{step:08d}.pt", "ckpt")
    store.put_bytes("ckpt/logs.txt", b"not a checkpoint")
    kept, removed = store.prune_checkpoints("ckpt", 1)
    assert [g.name for g in kept] == ["ckpt-00000300.pt"]
    assert [g.name for g in removed] == ["ckpt-00000100.pt", "ckpt-00000200.pt"]
    remaining = sorted(o.key for o in store.list("ckpt/"))
    assert remaining == [
        "ckpt/.runctl-manifests/ckpt-00000300.pt.json",
        "ckpt/ckpt-00000300.pt",
        "ckpt/logs.txt",
    ]
    record = store.latest_checkpoint("ckpt")
    assert record is not None
    path = store.fetch_checkpoint(record, tmp_path / "restore")
    assert path.read_bytes() == (src / "ckpt-00000300.pt").read_bytes()


def test_missing_bucket_and_missing_source(aws: str, tmp_path: Path) -> None:
    store = S3Storage("s3://no-such-bucket/x", settings=SMALL)
    (tmp_path / "f").write_bytes(b"1")
    with pytest.raises(NotFoundError, match="bucket s3://no-such-bucket does not exist"):
        store.put_file("f", tmp_path / "f")
    aws_clients.client("s3").create_bucket(Bucket="no-such-bucket")
    with pytest.raises(NotFoundError, match="does not exist"):
        S3Storage("s3://no-such-bucket/x").put_file("f", tmp_path / "missing")
    with pytest.raises(NotFoundError):
        S3Storage("s3://no-such-bucket/x").get_file("nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- faults through the proxy ------------------------------------------------------------


def only(method: str, fault: Fault, *, times: int | None = None, path_part: str = "") -> object:
    left = [times]

    def rule(request: Request) -> Fault | None:
        if request.method != method or path_part not in request.path:
            return None
        if left[0] is None:
            return fault
        if left[0] > 0:
            left[0] -= 1
            return fault
        return None

    return rule


def test_throttling_is_retried_and_the_result_is_correct(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=SMALL)
    source = tree(tmp_path / "src", {f"f{i}.bin": os.urandom(1000 + i) for i in range(6)})
    fault_proxy.rule = only("PUT", s3_error("SlowDown", 503), times=4)  # type: ignore[assignment]
    upload_tree(source, store, "t")
    assert fault_proxy.injected == 4
    fault_proxy.rule = only("GET", s3_error("SlowDown", 503), times=3, path_part="/t/f")  # type: ignore[assignment]
    download_tree(store, "t", tmp_path / "dst")
    assert fault_proxy.injected == 7
    assert read_tree(tmp_path / "dst") == read_tree(source)


def test_retries_are_bounded(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    settings = TransferSettings(max_concurrency=2, max_attempts=3)
    store = S3Storage(f"s3://{BUCKET}/run", settings=settings)
    source = tree(tmp_path / "src", {f"f{i}.bin": b"x" for i in range(5)})
    fault_proxy.rule = only("PUT", s3_error("SlowDown", 503))  # type: ignore[assignment]
    with pytest.raises(RetryExhaustedError, match="SlowDown"):
        upload_tree(source, store, "t")
    puts = sum(1 for r in fault_proxy.requests if r.method == "PUT")
    assert 3 <= puts <= 2 * 3 + 2  # at most max_attempts per request in flight (2), then it stops


def test_access_denied_is_a_clear_auth_error(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    (tmp_path / "f").write_bytes(b"1")
    fault_proxy.rule = lambda r: s3_error("AccessDenied", 403) if r.method == "HEAD" else None  # type: ignore[assignment]
    with pytest.raises(AuthError, match="refused") as caught:
        S3Storage(f"s3://{BUCKET}/run").put_file("f", tmp_path / "f")
    assert "IAM" in (caught.value.hint or "")
    fault_proxy.rule = only("PUT", s3_error("AccessDenied", 403))  # type: ignore[assignment]
    with pytest.raises(AuthError):
        S3Storage(f"s3://{BUCKET}/run").put_file("f", tmp_path / "f")


def test_corrupted_download_leaves_nothing(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=SMALL)
    store.put_bytes("x.bin", b"the real content")
    bad = Fault(status=200, body=b"the fake content", headers={"ETag": '"' + md5(b"the real content") + '"'})
    fault_proxy.rule = only("GET", bad, path_part="x.bin")  # type: ignore[assignment]
    with pytest.raises(ChecksumMismatchError, match="MD5"):
        store.get_file("x.bin", tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == []


def test_corruption_is_caught_by_the_stored_crc32(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=SMALL)
    real = b"the real content"
    store.put_bytes("x.bin", real)
    headers = {"ETag": '"' + md5(real) + '"', checksums.HEADER: f"{zlib.crc32(real):08x}"}
    fault_proxy.rule = only("GET", Fault(status=200, body=b"the fake content", headers=headers))  # type: ignore[assignment]
    with pytest.raises(ChecksumMismatchError, match="CRC-32"):
        store.get_file("x.bin", tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("writer", "caught_by"), [("runctl", "CRC-32"), ("boto3", "parts hash")])
def test_a_corrupted_range_fails_the_whole_download(
    fault_proxy: FaultProxy, tmp_path: Path, writer: str, caught_by: str
) -> None:
    """Ours are checked by the stored CRC-32; another tool's multipart object by its part MD5s."""
    client = aws_clients.client("s3")
    client.create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=SMALL)
    data = os.urandom(11 * MiB)
    (tmp_path / "big.bin").write_bytes(data)
    if writer == "runctl":
        store.put_file("big.bin", tmp_path / "big.bin")
    else:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
        client.upload_file(str(tmp_path / "big.bin"), BUCKET, "run/big.bin", Config=config)
    real = fault_proxy.rule

    def flip_one_range(request: Request) -> Fault | None:
        if request.method != "GET" or "bytes=0-" not in request.headers.get("Range", ""):
            return None
        fault_proxy.rule = real  # type: ignore[assignment]
        end = int(request.headers["Range"].rsplit("-", 1)[1])
        body = bytearray(data[: end + 1])
        body[12345] ^= 0xFF
        return Fault(status=206, body=bytes(body), headers={"ETag": '"x"'})

    fault_proxy.rule = flip_one_range  # type: ignore[assignment]
    with pytest.raises(ChecksumMismatchError, match=caught_by):
        store.get_file("big.bin", tmp_path / "out" / "big.bin")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_upload_whose_stored_etag_differs_fails(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=SMALL)
    (tmp_path / "f").write_bytes(b"payload")
    lying = Fault(status=200, headers={"ETag": '"' + "0" * 32 + '"'})
    fault_proxy.rule = only("PUT", lying)  # type: ignore[assignment]
    with pytest.raises(ChecksumMismatchError, match="expected"):
        store.put_file("f", tmp_path / "f")


def test_every_part_carries_a_crc32_for_s3_to_check(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=SMALL)
    data = os.urandom(11 * MiB)
    (tmp_path / "big.bin").write_bytes(data)
    store.put_file("big.bin", tmp_path / "big.bin")
    sent = {
        r.path.split("partNumber=")[1].split("&")[0]: r.headers.get(checksums.S3_HEADER)
        for r in fault_proxy.requests
        if r.method == "PUT" and "partNumber=" in r.path
    }
    pieces = [data[i : i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    assert sent == {str(n): checksums.s3_form(zlib.crc32(piece)) for n, piece in enumerate(pieces, 1)}
    complete = next(r for r in fault_proxy.requests if r.method == "POST" and "uploadId=" in r.path)
    assert complete.body.count(b"<ChecksumCRC32>") == 3


def test_s3_checksums_can_be_turned_off(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """For stores that refuse x-amz-checksum-*: none is sent; runctl's own CRC-32 still checks."""
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=replace(SMALL, s3_checksums=False))
    data = os.urandom(11 * MiB)
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "small.bin").write_bytes(b"small")
    store.put_file("big.bin", tmp_path / "big.bin")
    store.put_file("small.bin", tmp_path / "small.bin")
    sent = [name.lower() for r in fault_proxy.requests for name in r.headers]
    assert sent and not [name for name in sent if name.startswith("x-amz-checksum")]
    assert not [r for r in fault_proxy.requests if b"ChecksumCRC32" in r.body]
    assert sent.count(checksums.HEADER) == 2  # the multipart upload's creation and the one PUT
    store.get_file("big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == data


def test_upload_whose_stored_crc32_differs_fails(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=SMALL)
    (tmp_path / "f").write_bytes(b"payload")
    lying = Fault(status=200, headers={"ETag": '"' + md5(b"payload") + '"', checksums.S3_HEADER: "AAAAAA=="})
    fault_proxy.rule = only("PUT", lying)  # type: ignore[assignment]
    with pytest.raises(ChecksumMismatchError, match="CRC-32"):
        store.put_file("f", tmp_path / "f")


def test_failed_multipart_upload_is_aborted(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    client = aws_clients.client("s3")
    client.create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=SMALL)
    (tmp_path / "big.bin").write_bytes(os.urandom(11 * MiB))
    fault_proxy.rule = only("PUT", s3_error("AccessDenied", 403), path_part="partNumber=2")  # type: ignore[assignment]
    with pytest.raises(AuthError):
        store.put_file("big.bin", tmp_path / "big.bin")
    fault_proxy.rule = None
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert store.stat("big.bin") is None


def test_publish_cut_short_by_the_network_is_never_latest(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    aws_clients.client("s3").create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=SMALL)
    src = tree(tmp_path / "c", {"step_1/a.bin": b"1", "step_2/a.bin": b"2", "step_2/b.bin": b"22"})
    store.publish_checkpoint(src / "step_1", "ckpt")
    store.publish_checkpoint(src / "step_2", "ckpt")
    # republishing step_2 fails on one part: step_2 must stop being complete
    fault_proxy.rule = only("PUT", s3_error("AccessDenied", 403), path_part="b.bin")  # type: ignore[assignment]
    with pytest.raises(AuthError):
        store.publish_checkpoint(src / "step_2", "ckpt")
    fault_proxy.rule = None
    latest = store.latest_checkpoint("ckpt")
    assert latest is not None and latest.name == "step_1"


def test_ctrl_c_during_a_multipart_upload_leaves_no_parts(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """A real SIGINT while a part is in flight: KeyboardInterrupt, the upload aborted, no object."""
    import signal

    client = aws_clients.client("s3")
    client.create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=SMALL)
    (tmp_path / "big.bin").write_bytes(os.urandom(11 * MiB))

    def interrupt_at_part_2(request: Request) -> Fault | None:
        if request.method == "PUT" and "partNumber=2" in request.path:
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt in the main thread
            return Fault(delay=1.0, forward=True)
        return None

    fault_proxy.rule = interrupt_at_part_2  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        store.put_file("big.bin", tmp_path / "big.bin")
    fault_proxy.rule = None
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert store.stat("big.bin") is None


def test_a_file_changed_during_its_upload_fails_it(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """Bytes of a later part rewritten while part 1 is sent: no mix of old and new is stored."""
    client = aws_clients.client("s3")
    client.create_bucket(Bucket=BUCKET)
    store = S3Storage(f"s3://{BUCKET}/run", settings=replace(SMALL, max_concurrency=1))
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(11 * MiB))

    def rewrite_part_3(request: Request) -> Fault | None:
        if request.method == "PUT" and "partNumber=1" in request.path:
            with path.open("r+b") as handle:  # same size: only the read-ahead CRC-32 can tell
                handle.seek(10 * MiB + 7)
                handle.write(b"changed")
        return None

    fault_proxy.rule = rewrite_part_3  # type: ignore[assignment]
    with pytest.raises(ValidationError, match="changed while it was being uploaded"):
        store.put_file("big.bin", path)
    fault_proxy.rule = None
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert store.stat("big.bin") is None
