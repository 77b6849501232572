"""The CRC-32 that runctl stores with its uploads: combining ranges gives the whole object's."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from runctl.storage.checksums import Crc32, crc32_combine, format_crc32, parse_crc32


@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=6))
def test_combined_ranges_equal_the_whole(pieces: list[bytes]) -> None:
    total = zlib.crc32(pieces[0])
    for piece in pieces[1:]:
        total = crc32_combine(total, zlib.crc32(piece), len(piece))
    assert total == zlib.crc32(b"".join(pieces))


def test_combine_over_a_long_range() -> None:
    head, tail = b"h" * 7, bytes(range(256)) * 4099  # a length with many set bits
    assert crc32_combine(zlib.crc32(head), zlib.crc32(tail), len(tail)) == zlib.crc32(head + tail)


@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=64))
def test_running_crc_matches_zlib(data: bytes, step: int) -> None:
    running = Crc32()
    for start in range(0, len(data), step):
        running.update(data[start : start + step])
    assert running.hexdigest() == format_crc32(zlib.crc32(data))
    assert parse_crc32(running.hexdigest()) == zlib.crc32(data)


def test_malformed_metadata_is_ignored() -> None:
    assert parse_crc32(None) is None
    assert parse_crc32("") is None
    assert parse_crc32("xyz") is None
    assert parse_crc32("0000000g") is None
    almost_hex = ("0x123456", "+1234567", "1234_567", " 1234567", "-0000001", "１２３４５６７８", "123456789")
    for almost in almost_hex:
        assert parse_crc32(almost) is None, almost
    assert parse_crc32("deadbeef") == 0xDEADBEEF


def test_answer_timestamps_are_parsed_fast_and_fall_back() -> None:
    from datetime import UTC, datetime

    from runctl.clients.aws import parse_timestamp

    assert parse_timestamp("2026-11-28T18:20:09.000Z") == datetime(2026, 11, 28, 18, 20, 9, tzinfo=UTC)
    assert parse_timestamp("2026-11-28T18:20:09").tzinfo is not None  # naive: UTC
    http_date = parse_timestamp("Wed, 21 Oct 2015 07:28:00 GMT")  # not ISO: botocore's parser
    assert http_date.timestamp() == datetime(2015, 10, 21, 7, 28, tzinfo=UTC).timestamp()
    assert parse_timestamp(1445412480).timestamp() == 1445412480  # epoch seconds (JSON protocols)
