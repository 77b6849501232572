"""A bare obstore (Rust ``object_store``) copier: the candidate engine measured on its own, with
no checks, no ledger and no CLI, as the floor a Python process using it could reach.

    python benchmarks/peer_obstore.py upload SRC s3://bucket/prefix   (SRC: a file or a folder)
    python benchmarks/peer_obstore.py download s3://bucket/key-or-prefix DEST

Endpoint and keys come from the standard AWS_* variables. Large objects are fetched in parallel
ranges (``max(8 MiB, size / 16)`` each) written in place with ``pwrite``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

MiB = 1 << 20


def store(bucket: str):  # type: ignore[no-untyped-def]
    from obstore.store import S3Store

    return S3Store(
        bucket,
        endpoint=os.environ["AWS_ENDPOINT_URL"],
        region=os.environ.get("AWS_REGION", "us-east-1"),
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


def split(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


async def upload(source: Path, url: str) -> None:
    import obstore

    bucket, prefix = split(url)
    s = store(bucket)
    limit = asyncio.Semaphore(16)
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())

    async def one(path: Path) -> None:
        key = prefix if source.is_file() else f"{prefix}/{path.relative_to(source).as_posix()}"
        async with limit:
            await obstore.put_async(s, key, path, chunk_size=8 * MiB, max_concurrency=16)

    await asyncio.gather(*(one(p) for p in files))


async def download(url: str, dest: Path) -> None:
    import obstore

    bucket, prefix = split(url)
    s = store(bucket)
    try:
        head = await obstore.head_async(s, prefix)
        objects = [(prefix, dest, head["size"])]
    except FileNotFoundError:
        listed = [m async for batch in obstore.list(s, prefix + "/") for m in batch]
        objects = [(m["path"], dest / m["path"][len(prefix) + 1 :], m["size"]) for m in listed]
    limit = asyncio.Semaphore(16)

    async def one(key: str, path: Path, size: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if size <= 64 * MiB:
            async with limit:
                data = await (await obstore.get_async(s, key)).bytes_async()
            path.write_bytes(bytes(data))
            return
        step = max(8 * MiB, -(-size // 16))
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        try:

            async def piece(start: int) -> None:
                async with limit:
                    data = await obstore.get_range_async(s, key, start=start, end=min(size, start + step))
                os.pwrite(fd, memoryview(data), start)

            await asyncio.gather(*(piece(start) for start in range(0, size, step)))
        finally:
            os.close(fd)

    await asyncio.gather(*(one(*o) for o in objects))


def main(argv: list[str]) -> None:
    command, a, b = argv
    if command == "upload":
        asyncio.run(upload(Path(a), b))
    else:
        asyncio.run(download(a, Path(b)))
    # obstore 0.12.1 aborts (SIGABRT, no message, no Python frame) in about 1 run of 6 while the
    # interpreter finalizes after this many concurrent uploads; the work is done by then, so the
    # floor is measured without the finalization.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
