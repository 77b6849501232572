"""The storage layer without a network: URI and key rules, the local directory implementation,
sync between a directory and storage, and checkpoint publish / latest / keep-last-N."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runctl.core.config import load_config, parse_size
from runctl.core.errors import ConfigError, NotFoundError, UsageError, ValidationError
from runctl.storage import open_storage, transfer_settings
from runctl.storage.atomic import temp_path
from runctl.storage.checkpoints import MANIFEST_DIR, manifest_key
from runctl.storage.local import LocalStorage
from runctl.storage.sync import download_tree, upload_tree
from runctl.storage.transfer import MiB, TransferSettings
from runctl.storage.uri import S3Uri, check_relative_key, parse_s3_uri, safe_join


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


FILES = {
    "a.txt": b"alpha",
    "empty.bin": b"",
    "sub/deeper/b.bin": os.urandom(3000),
    "ünïcødé/名前 with space.txt": "héllo".encode(),
}


# ---- URIs and keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bucket", "key"),
    [
        ("s3://my-bucket", "my-bucket", ""),
        ("s3://my-bucket/", "my-bucket", ""),
        ("s3://my.bucket-1/a/b/c.pt", "my.bucket-1", "a/b/c.pt"),
        ("S3://abc/ünï/x", "abc", "ünï/x"),
    ],
)
def test_parse_s3_uri(text: str, bucket: str, key: str) -> None:
    assert parse_s3_uri(text) == S3Uri(bucket, key)


@pytest.mark.parametrize(
    ("text", "error", "says"),
    [
        ("s3://", UsageError, "no bucket"),
        ("s3:///key", UsageError, "no bucket"),
        ("/tmp/x", UsageError, "not an s3:// URI"),
        ("s3://ab/x", ValidationError, "3 to 63"),
        ("s3://My_Bucket/x", ValidationError, "capital letters or underscores"),
        ("s3://-bucket/x", ValidationError, "start and end"),
        ("s3://a..b/x", ValidationError, "'..'"),
        ("s3://192.168.1.1/x", ValidationError, "IP address"),
        ("s3://xn--bucket/x", ValidationError, "reserves"),
        ("s3://bucket/" + "k" * 1025, ValidationError, "1024 bytes"),
    ],
)
def test_bad_uris_name_the_argument_and_the_fix(text: str, error: type[Exception], says: str) -> None:
    with pytest.raises(error) as caught:
        parse_s3_uri(text, arg="DST")
    assert says in str(caught.value)
    assert str(caught.value).startswith("DST:")
    assert caught.value.hint  # type: ignore[attr-defined]


def test_require_key() -> None:
    with pytest.raises(UsageError, match="no object"):
        parse_s3_uri("s3://bucket/", require_key=True)
    assert S3Uri("b", "runs/x").as_prefix() == "runs/x/"
    assert S3Uri("b", "").as_prefix() == ""
    assert S3Uri("b", "runs/").join("c.pt") == S3Uri("b", "runs/c.pt")


@pytest.mark.parametrize(
    "key", ["../evil", "a/../../evil", "/etc/passwd", "a//b", "./a", "a/./b", "C:\\x", "a\x00b"]
)
def test_unsafe_keys_are_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        safe_join(tmp_path, key)


def test_safe_join_refuses_a_symlink_that_leads_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(outside)
    with pytest.raises(ValidationError, match="resolves to"):
        safe_join(dest, "link/x")
    assert safe_join(dest, "ok/x") == dest / "ok" / "x"
    assert str(check_relative_key("a/b c/ü")) == "a/b c/ü"


# ---- config -------------------------------------------------------------------------------


def test_storage_config_sizes_and_defaults(tmp_path: Path) -> None:
    assert parse_size("64MiB") == 64 * MiB and parse_size("1GiB") == 1 << 30 and parse_size("100MB") == 10**8
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
    (tmp_path / ".runctl.toml").write_text('[storage]\npart_size = "16MiB"\nmax_concurrency = 4\n')
    config = load_config(cwd=tmp_path, environ={}).config
    settings = transfer_settings(config.storage)
    assert settings.part_size == 16 * MiB and settings.max_concurrency == 4
    assert settings.multipart_threshold == 64 * MiB and settings.s3_checksums
    config = load_config(cwd=tmp_path, environ={"RUNCTL_STORAGE__S3_CHECKSUMS": "false"}).config
    assert not transfer_settings(config.storage).s3_checksums
    (tmp_path / ".runctl.toml").write_text('[storage]\npart_size = "1MiB"\n')
    with pytest.raises(ConfigError, match=r"storage\.part_size"):
        load_config(cwd=tmp_path, environ={})


def test_open_storage_picks_the_backend(tmp_path: Path, isolated_env: Path) -> None:
    assert isinstance(open_storage(tmp_path / "x"), LocalStorage)
    default = open_storage()
    assert isinstance(default, LocalStorage) and default.url == str(isolated_env / "storage")
    with pytest.raises(ConfigError) as caught:  # a bad bucket in the config fails on load
        load_config(environ={"RUNCTL_STORAGE__URI": "s3://Bad/x"})
    assert caught.value.key == "storage.uri" and "capital letters" in str(caught.value)
    s3 = open_storage("s3://my-bucket/runs")
    assert s3.url == "s3://my-bucket/runs/"


def test_transfer_settings_grow_parts_for_huge_files() -> None:
    settings = TransferSettings()
    assert settings.upload_part_size(100 * MiB) == 8 * MiB
    huge = 2 * 1024**4  # 2 TiB: 8 MiB parts would need 262144 of them
    part = settings.upload_part_size(huge)
    assert part % MiB == 0 and huge / part <= 10_000
    with pytest.raises(ValidationError, match="larger than S3"):
        settings.upload_part_size(60 * 1024**4)
    with pytest.raises(ValidationError, match="part_size"):
        TransferSettings(part_size=MiB)
    # ranges: few and large, a whole number of the object's parts
    assert settings.range_size(512 * MiB, None) == 64 * MiB
    assert settings.range_size(512 * MiB, 8 * MiB) == 64 * MiB
    assert settings.range_size(10 * 1024 * MiB, None) == 640 * MiB
    assert settings.range_size(512 * MiB, None, ordered=True) == 16 * MiB  # hashed front to back


# ---- local storage ------------------------------------------------------------------------


def test_local_put_get_stat_list_delete(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "root")
    info = store.put_bytes("jobs/j-1/status.json", b'{"a": 1}')
    assert info.size == 8 and store.get_bytes("jobs/j-1/status.json") == b'{"a": 1}'
    assert store.stat("jobs/j-1/status.json") is not None and store.stat("nope") is None
    with pytest.raises(NotFoundError):
        store.get_bytes("jobs/missing")
    store.put_bytes("jobs/j-1/logs/0001.log", b"x")
    store.put_bytes("jobs/j-2/status.json", b"{}")
    assert [o.key for o in store.list("jobs/j-1/")] == ["jobs/j-1/logs/0001.log", "jobs/j-1/status.json"]
    shallow = list(store.list("jobs/j-1/", recursive=False))
    assert [(o.key, o.is_dir) for o in shallow] == [("jobs/j-1/logs/", True), ("jobs/j-1/status.json", False)]
    assert [o.key for o in store.list("jobs/j")] == [
        "jobs/j-1/logs/0001.log",
        "jobs/j-1/status.json",
        "jobs/j-2/status.json",
    ]
    assert store.delete(["jobs/j-1/logs/0001.log", "jobs/never-there"]) == 2
    assert not (tmp_path / "root/jobs/j-1/logs").exists()  # emptied directories go too
    with pytest.raises(ValidationError):
        store.put_bytes("../escape", b"x")
    assert not (tmp_path / "escape").exists()


def test_local_json_status(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    assert store.read_json("status.json") is None
    store.write_json("status.json", {"state": "running", "step": 3})
    assert store.read_json("status.json") == {"state": "running", "step": 3}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValidationError, match="not valid JSON"):
        store.read_json("bad.json")


def test_local_listing_skips_temp_files(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.put_bytes("a/x.bin", b"1")
    temp_path(tmp_path / "a" / "y.bin").write_bytes(b"half")
    assert [o.key for o in store.list()] == ["a/x.bin"]


def test_local_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValidationError, match="is a file"):
        LocalStorage(tmp_path / "f")


# ---- sync ---------------------------------------------------------------------------------


def test_sync_round_trip_is_identical_and_idempotent(tmp_path: Path) -> None:
    source = tree(tmp_path / "src", FILES)
    store = LocalStorage(tmp_path / "store")
    first = upload_tree(source, store, "run/ckpt")
    assert len(first.transferred) == len(FILES) and first.bytes == sum(len(v) for v in FILES.values())
    again = upload_tree(source, store, "run/ckpt")
    assert again.transferred == [] and again.unchanged == len(FILES)

    download_tree(store, "run/ckpt", tmp_path / "dst")
    assert read_tree(tmp_path / "dst") == FILES
    assert download_tree(store, "run/ckpt", tmp_path / "dst").transferred == []

    # a changed file (same size, new content, newer mtime) goes again; nothing else does
    changed = source / "a.txt"
    changed.write_bytes(b"ALPHA")
    os.utime(changed, (changed.stat().st_mtime + 10, changed.stat().st_mtime + 10))
    assert upload_tree(source, store, "run/ckpt").transferred == ["run/ckpt/a.txt"]


def test_sync_delete_removes_only_under_the_prefix(tmp_path: Path) -> None:
    source = tree(tmp_path / "src", {"keep.txt": b"k"})
    store = LocalStorage(tmp_path / "store")
    store.put_bytes("run/ckpt/old.txt", b"old")
    store.put_bytes("run/other/stay.txt", b"stay")
    result = upload_tree(source, store, "run/ckpt", delete=True, dry_run=True)
    assert result.deleted == ["run/ckpt/old.txt"] and store.exists("run/ckpt/old.txt")
    upload_tree(source, store, "run/ckpt", delete=True)
    assert sorted(o.key for o in store.list()) == ["run/ckpt/keep.txt", "run/other/stay.txt"]

    local = tree(tmp_path / "dst", {"extra.txt": b"e"})
    download_tree(store, "run/ckpt", local, delete=True)
    assert read_tree(local) == {"keep.txt": b"k"}


def test_sync_bad_input(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    with pytest.raises(NotFoundError):
        upload_tree(tmp_path / "missing", store, "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationError, match="is a file"):
        upload_tree(tmp_path / "file", store, "x")
    store.put_bytes("x/a", b"1")
    with pytest.raises(ValidationError, match="is a file"):
        download_tree(store, "x", tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x"


# ---- checkpoints --------------------------------------------------------------------------


def test_publish_then_latest_and_fetch(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    ckpts = tmp_path / "ckpts"
    tree(ckpts, {"ckpt-00000100.pt": b"one", "epoch_2/model.bin": b"m" * 100, "epoch_2/opt.bin": b"o"})
    assert store.latest_checkpoint("run/ckpt") is None
    store.publish_checkpoint(ckpts / "ckpt-00000100.pt", "run/ckpt")
    record = store.publish_checkpoint(ckpts / "epoch_2", "run/ckpt")
    assert record.manifest.kind == "dir" and record.manifest.size == 101 and record.step == 2
    assert [r.name for r in store.list_checkpoints("run/ckpt")] == ["epoch_2", "ckpt-00000100.pt"]
    latest = store.latest_checkpoint("run/ckpt")
    assert latest is not None and latest.name == "ckpt-00000100.pt"

    path = store.fetch_checkpoint(record, tmp_path / "restore")
    assert read_tree(path) == {"model.bin": b"m" * 100, "opt.bin": b"o"}
    assert [p.name for p in (tmp_path / "restore").iterdir()] == ["epoch_2"]  # no staging left
    file_path = store.fetch_checkpoint(latest, tmp_path / "restore")
    assert file_path.read_bytes() == b"one"


def test_a_checkpoint_without_manifest_is_never_latest(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    good = tree(tmp_path / "c", {"ckpt-00000001.pt": b"1"}) / "ckpt-00000001.pt"
    store.publish_checkpoint(good, "p")
    store.put_bytes("p/ckpt-00000009.pt", b"half an upload")  # parts, but no manifest
    latest = store.latest_checkpoint("p")
    assert latest is not None and latest.step == 1


def test_fetch_refuses_a_checkpoint_changed_after_publishing(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    src = tree(tmp_path / "c", {"ckpt-5/a.bin": b"aaaa"}) / "ckpt-5"
    record = store.publish_checkpoint(src, "p")
    store.put_bytes("p/ckpt-5/a.bin", b"aaaaaaaa")
    with pytest.raises(ValidationError, match="differs from its manifest"):
        store.fetch_checkpoint(record, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_publish_refuses_work_in_progress_names(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    (tmp_path / "ckpt-1.pt.tmp").write_bytes(b"x")
    with pytest.raises(ValidationError, match="work-in-progress"):
        store.publish_checkpoint(tmp_path / "ckpt-1.pt.tmp", "p")
    with pytest.raises(NotFoundError):
        store.publish_checkpoint(tmp_path / "nope", "p")


def test_prune_keeps_newest_and_removes_manifest_first(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    src = tmp_path / "c"
    for step in (1, 2, 3, 4):
        tree(src, {f"step_{step}/w.bin": b"w" * step})
        store.publish_checkpoint(src / f"step_{step}", "p")
    store.put_bytes("p/status.json", b"{}")  # not a checkpoint: never touched
    store.put_bytes("p/step_0/w.bin", b"abandoned")  # no manifest, older than any kept one
    kept, removed = store.prune_checkpoints("p", 2, dry_run=True)
    assert [g.name for g in kept] == ["step_3", "step_4"]
    assert [g.name for g in removed] == ["step_1", "step_2", "step_0"]
    assert store.exists("p/step_1/w.bin")  # dry run
    store.prune_checkpoints("p", 2)
    assert sorted(o.key for o in store.list("p/")) == [
        f"p/{MANIFEST_DIR}/step_3.json",
        f"p/{MANIFEST_DIR}/step_4.json",
        "p/status.json",
        "p/step_3/w.bin",
        "p/step_4/w.bin",
    ]
    with pytest.raises(ValidationError, match="at least 1"):
        store.prune_checkpoints("p", 0)


def test_prune_without_manifests_groups_by_step_name(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    for name in ("ckpt-10.pt", "ckpt-2.pt", "ckpt-30.pt", "notes.txt", "ckpt-40.pt.tmp"):
        store.put_bytes(f"p/{name}", b"x")
    kept, removed = store.prune_checkpoints("p", 1)
    assert [g.name for g in kept] == ["ckpt-30.pt"]
    assert [g.name for g in removed] == ["ckpt-2.pt", "ckpt-10.pt"]
    assert sorted(o.key for o in store.list()) == ["p/ckpt-30.pt", "p/ckpt-40.pt.tmp", "p/notes.txt"]


def test_manifest_is_json_with_sizes(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    src = tree(tmp_path / "c", {"ckpt-7.pt": b"1234"}) / "ckpt-7.pt"
    store.publish_checkpoint(src, "p")
    body = json.loads(store.get_bytes(manifest_key("p", "ckpt-7.pt")))
    assert body["format"] == "runctl-checkpoint/1" and body["files"] == [
        {"path": "ckpt-7.pt", "size": 4, "etag": None}
    ]
    (tmp_path / "store" / manifest_key("p", "ckpt-7.pt")).write_text('{"format": "other"}')
    with pytest.raises(ValidationError, match="not valid"):
        store.list_checkpoints("p")
