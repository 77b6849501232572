"""``runctl s3 upload|download|sync|ls|rm|cleanup|presign``: files to and from S3.

Paths follow ``aws s3``: uploading a file to a key ending in ``/`` (or to a bare bucket) keeps
the file's name; ``--recursive`` treats the S3 side as a directory. On a terminal a progress bar
(bytes, rate, ETA) runs on stderr; ``--output json`` or a pipe keeps it quiet. The settings come
from ``[storage]`` (endpoint, part size, concurrency); credentials from boto3's chain.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runctl.cli import render
from runctl.cli.options import OutputOpt, duration_arg
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE

if TYPE_CHECKING:
    from runctl.storage.s3 import S3Storage
    from runctl.storage.sync import SyncResult
    from runctl.storage.uri import S3Uri

app = typer.Typer(
    help="Copy, sync, list and clean up files in S3 (or any S3-compatible store).", no_args_is_help=True
)

RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Treat the S3 side as a directory.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Only say what would happen.")]
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


def _bucket_storage(uri: S3Uri, *, rooted: bool = False) -> S3Storage:
    """Storage for ``uri``'s bucket (or rooted at ``uri`` itself), with ``[storage]`` settings."""
    from runctl.storage import transfer_settings
    from runctl.storage.s3 import S3Storage
    from runctl.storage.uri import S3Uri

    config = STATE.loaded().config.storage
    return S3Storage(
        uri if rooted else S3Uri(uri.bucket),
        settings=transfer_settings(config),
        endpoint_url=config.endpoint_url,
        region=config.region,
    )


def _s3(text: str, arg: str, *, require_key: bool = False) -> S3Uri:
    from runctl.storage.uri import parse_s3_uri

    return parse_s3_uri(text, arg=arg, require_key=require_key)


def _local(text: str, arg: str, *, must_exist: bool) -> Path:
    from runctl.core.errors import NotFoundError, UsageError
    from runctl.storage.uri import is_s3_uri

    if is_s3_uri(text):
        raise UsageError(f"{arg}: expected a local path, got {text}", hint="runctl s3 --help shows each form")
    path = Path(text).expanduser()
    if must_exist and not path.exists():
        raise NotFoundError(f"{arg}: {path} does not exist", hint="check the path")
    return path


@contextmanager
def _progress(
    output: OutputFormat, label: str
) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """``(set_total, advance)`` callbacks: a rich bar on a terminal, nothing otherwise."""
    if output is OutputFormat.json or not (sys.stderr.isatty() and sys.stdout.isatty()):
        yield (lambda _total: None), (lambda _n: None)
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=render.err_console(),
        transient=True,
    )
    task = bar.add_task(label, total=None)
    with bar:
        yield (lambda total: bar.update(task, total=total)), (lambda n: bar.advance(task, n))


def _report(result: SyncResult, output: OutputFormat, verb: str) -> None:
    if output is OutputFormat.json:
        render.print_json(result.to_dict())
        return
    rate = result.bytes / result.seconds if result.seconds > 0 else 0.0
    would = "would " if result.dry_run else ""
    line = f"{would}{verb} {len(result.transferred)} file(s), {render.size(result.bytes)}"
    if not result.dry_run:
        line += f" in {result.seconds:.1f}s ({render.size(rate)}/s)"
    if result.unchanged:
        line += f"; {result.unchanged} unchanged"
    if result.deleted:
        line += f"; {would}deleted {len(result.deleted)}"
    render.console().print(line)
    if result.dry_run:
        for name in result.transferred:
            render.console().print(f"  {verb}: {name}")
        for name in result.deleted:
            render.console().print(f"  delete: {name}")


def _single(direction: str, target: str, size: int, seconds: float) -> SyncResult:
    from runctl.storage.sync import SyncResult

    return SyncResult(direction, transferred=[target], bytes=size, seconds=seconds)


@app.command("upload")
def upload(
    src: Annotated[str, typer.Argument(help="A local file (or a directory, with --recursive).")],
    dst: Annotated[str, typer.Argument(help="s3://BUCKET/KEY, or s3://BUCKET/PREFIX/ to keep the name.")],
    recursive: RecursiveOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Upload a file, or a directory tree with --recursive."""
    from runctl.core.errors import UsageError
    from runctl.storage.sync import upload_tree

    source = _local(src, "SRC", must_exist=True)
    target = _s3(dst, "DST")
    storage = _bucket_storage(target)
    with _progress(output, "upload") as (set_total, advance):
        if source.is_dir():
            if not recursive:
                raise UsageError(
                    f"SRC: {source} is a directory", hint=f"add --recursive: runctl s3 upload -r {src} {dst}"
                )
            result = upload_tree(
                source,
                storage,
                target.key,
                only_changed=False,
                progress=advance,
                on_plan=lambda plan: set_total(plan.bytes),
            )
        else:
            key = (
                target.key
                if target.key and not target.key.endswith("/")
                else target.as_prefix() + source.name
            )
            started = time.monotonic()
            set_total(source.stat().st_size)
            info = storage.put_file(key, source, progress=advance)
            result = _single(
                "upload", f"s3://{target.bucket}/{info.key}", info.size, time.monotonic() - started
            )
    _report(result, output, "uploaded")


@app.command("download")
def download(
    src: Annotated[str, typer.Argument(help="s3://BUCKET/KEY (or a prefix, with --recursive).")],
    dst: Annotated[str, typer.Argument(help="A local file or directory.")],
    recursive: RecursiveOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Download an object, or everything under a prefix with --recursive."""
    from runctl.core.errors import NotFoundError
    from runctl.storage.sync import dir_prefix, download_tree
    from runctl.storage.uri import safe_join

    source = _s3(src, "SRC", require_key=not recursive)
    destination = _local(dst, "DST", must_exist=False)
    storage = _bucket_storage(source)
    storage.check_bucket()
    with _progress(output, "download") as (set_total, advance):
        if recursive:
            result = download_tree(
                storage,
                source.key,
                destination,
                only_changed=False,
                progress=advance,
                on_plan=lambda plan: set_total(plan.bytes),
            )
        else:
            info = storage.stat(source.key)
            if info is None:
                under = next(storage.list(dir_prefix(source.key)), None)
                hint = (
                    f"it is a prefix: runctl s3 download -r {src} {dst}"
                    if under
                    else "check the key: runctl s3 ls"
                )
                raise NotFoundError(f"SRC: {src} does not exist", hint=hint)
            into_dir = destination.is_dir() or dst.endswith(("/", "\\"))
            target = safe_join(destination, source.name) if into_dir else destination
            started = time.monotonic()
            set_total(info.size)
            storage.download_files([(info, target)], progress=advance)
            result = _single("download", str(target), info.size, time.monotonic() - started)
    _report(result, output, "downloaded")


@app.command("sync")
def sync(
    src: Annotated[str, typer.Argument(help="A local directory or s3://BUCKET/PREFIX.")],
    dst: Annotated[str, typer.Argument(help="s3://BUCKET/PREFIX or a local directory (the other side).")],
    delete: Annotated[bool, typer.Option("--delete", help="Also remove what SRC does not have.")] = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Make DST like SRC: copy what is new or changed (size, mtime, ETag); --delete the rest."""
    from runctl.core.errors import UsageError
    from runctl.storage.sync import download_tree, upload_tree
    from runctl.storage.uri import is_s3_uri

    if is_s3_uri(src) == is_s3_uri(dst):
        raise UsageError(
            "sync needs one local directory and one s3:// URI",
            hint="runctl s3 sync ./checkpoints s3://bucket/run-1/checkpoints (or the other way round)",
        )
    with _progress(output, "sync") as (set_total, advance):
        if is_s3_uri(dst):
            target = _s3(dst, "DST")
            storage = _bucket_storage(target)
            storage.check_bucket()
            result = upload_tree(
                _local(src, "SRC", must_exist=True),
                storage,
                target.key,
                delete=delete,
                dry_run=dry_run,
                progress=advance,
                on_plan=lambda plan: set_total(plan.bytes),
            )
            verb = "uploaded"
        else:
            source = _s3(src, "SRC")
            storage = _bucket_storage(source)
            storage.check_bucket()
            result = download_tree(
                storage,
                source.key,
                _local(dst, "DST", must_exist=False),
                delete=delete,
                dry_run=dry_run,
                progress=advance,
                on_plan=lambda plan: set_total(plan.bytes),
            )
            verb = "downloaded"
    _report(result, output, verb)


@app.command("ls")
def ls(
    uri: Annotated[str | None, typer.Argument(help="s3://BUCKET[/PREFIX]; none lists your buckets.")] = None,
    recursive: RecursiveOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List buckets, or the objects (and sub-prefixes) under a prefix."""
    if uri is None:
        from runctl.clients import aws

        config = STATE.loaded().config.storage
        client = aws.client("s3", config.region, endpoint_url=config.endpoint_url)
        buckets = aws.call(client.list_buckets, operation="list buckets").get("Buckets", [])
        rows = [{"name": b["Name"], "created": b["CreationDate"].timestamp()} for b in buckets]
        if output is OutputFormat.json:
            render.print_json(rows)
        else:
            render.table(None, ["CREATED", "BUCKET"], [(render.when(r["created"]), r["name"]) for r in rows])
        return
    location = _s3(uri, "URI")
    storage = _bucket_storage(location)
    storage.check_bucket()
    entries = list(storage.list(location.key, recursive=recursive))
    if output is OutputFormat.json:
        render.print_json([e.to_dict() for e in entries])
        return
    render.table(
        None,
        ["MODIFIED", "SIZE", "KEY"],
        [
            ("", "PRE", e.key) if e.is_dir else (render.when(e.mtime), render.size(e.size), e.key)
            for e in entries
        ],
    )


@app.command("rm")
def rm(
    uri: Annotated[str, typer.Argument(help="s3://BUCKET/KEY (or a prefix, with --recursive).")],
    recursive: RecursiveOpt = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Delete an object, or everything under a prefix with --recursive."""
    from runctl.core.errors import NotFoundError
    from runctl.storage.sync import dir_prefix

    location = _s3(uri, "URI", require_key=not recursive)
    storage = _bucket_storage(location)
    storage.check_bucket()
    if recursive:
        keys = [o.key for o in storage.list(dir_prefix(location.key))]
    else:
        if storage.stat(location.key) is None:
            raise NotFoundError(f"URI: {uri} does not exist", hint="check the key: runctl s3 ls")
        keys = [location.key]
    if not dry_run:
        storage.delete(keys)
    if output is OutputFormat.json:
        render.print_json({"dry_run": dry_run, "deleted": keys})
        return
    verb = "would delete" if dry_run else "deleted"
    render.console().print(f"{verb} {len(keys)} object(s)")
    if dry_run:
        for key in keys:
            render.console().print(f"  s3://{location.bucket}/{key}")


@app.command("cleanup")
def cleanup(
    uri: Annotated[str, typer.Argument(help="s3://BUCKET/PREFIX that holds the checkpoints.")],
    keep_last_n: Annotated[int, typer.Option("--keep-last-n", help="How many newest checkpoints to keep.")],
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Delete all but the newest N checkpoints under a prefix (grouped by checkpoint).

    Only checkpoints are touched: objects grouped by their first path component, counted as a
    checkpoint when runctl published it (it has a manifest) or, in a prefix without manifests,
    when its name carries a step number (ckpt-1200.pt, epoch_3/). Logs, status files and
    anything else stay.
    """
    location = _s3(uri, "URI")
    storage = _bucket_storage(location, rooted=True)
    storage.check_bucket()
    kept, removed = storage.prune_checkpoints("", keep_last_n, dry_run=dry_run)
    if output is OutputFormat.json:
        render.print_json(
            {
                "dry_run": dry_run,
                "kept": [g.to_dict() for g in kept],
                "removed": [g.to_dict() for g in removed],
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    render.console().print(f"{verb} {len(removed)} checkpoint(s), kept {len(kept)}")
    for group in removed:
        render.console().print(
            f"  {verb.split()[-1]}: {group.name} ({len(group.keys)} object(s), {render.size(group.size)})"
        )
    for group in kept:
        render.console().print(f"  kept: {group.name}")


@app.command("presign")
def presign(
    uri: Annotated[str, typer.Argument(help="s3://BUCKET/KEY")],
    expires: Annotated[
        str, typer.Option(help="How long the URL works (e.g. 15m, 1h, 7d; at most 7d).")
    ] = "1h",
    put: Annotated[
        bool, typer.Option("--put", help="A URL to upload to KEY instead of downloading it.")
    ] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Print a URL that gives time-limited access to one object without credentials."""
    from runctl.core.errors import NotFoundError, UsageError

    location = _s3(uri, "URI", require_key=True)
    lifetime = duration_arg("--expires", expires) or 3600.0
    if lifetime < 1:  # S3 counts whole seconds: less would sign an expiry of 0
        raise UsageError(f"--expires {expires}: a URL must work for at least 1s", hint="e.g. --expires 15m")
    seconds = int(lifetime)
    if seconds > MAX_PRESIGN_SECONDS:
        raise UsageError("--expires: S3 allows at most 7 days (7d)", hint="e.g. --expires 7d")
    storage = _bucket_storage(location)
    storage.check_bucket()
    if not put and storage.stat(location.key) is None:
        raise NotFoundError(
            f"URI: {uri} does not exist", hint="check the key, or use --put to make an upload URL"
        )
    url = storage.presign(location.key, expires=seconds, method="put" if put else "get")
    if output is OutputFormat.json:
        render.print_json(
            {"url": url, "method": "PUT" if put else "GET", "expires_at": time.time() + seconds}
        )
    else:
        sys.stdout.write(url + "\n")
