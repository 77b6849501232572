"""The IMDSv2 client and the spot interruption watcher, against a fake IMDS on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from runctl.agent.imds import Imds, InterruptionNotice, InterruptionWatcher
from tests.support.fake_imds import FakeImds


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    fake = FakeImds()
    yield fake
    fake.close()


def test_reads_metadata_with_a_session_token(imds: FakeImds) -> None:
    client = Imds(imds.url)
    assert client.get("instance-id") == "i-0123456789abcdef0"
    assert client.get("placement/region") == "us-east-1"
    assert client.get("no/such/key") is None
    assert imds.requests[0] == "PUT /latest/api/token"  # token first, then reads
    assert sum(r.startswith("PUT") for r in imds.requests) == 1  # the token is reused


def test_the_sdk_endpoint_variable_is_honoured(imds: FakeImds, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
    assert Imds().get("instance-id") == "i-0123456789abcdef0"  # boto3's name reaches the agent
    monkeypatch.setenv("RUNCTL_IMDS_ENDPOINT", "http://127.0.0.1:9")  # runctl's own name wins
    assert Imds().endpoint == "http://127.0.0.1:9"
    assert Imds(imds.url).endpoint == imds.url  # and --imds-endpoint over both


def test_no_notice_until_one_is_scheduled(imds: FakeImds) -> None:
    client = Imds(imds.url)
    assert client.instance_action() is None
    imds.schedule_interruption("stop", in_seconds=120)
    notice = client.instance_action()
    assert notice is not None and notice.action == "stop"
    left = notice.seconds_left()
    assert left is not None and 100 < left <= 120


def test_watcher_calls_back_once_when_the_notice_appears(imds: FakeImds) -> None:
    seen: list[InterruptionNotice] = []
    fired = threading.Event()

    def on_notice(notice: InterruptionNotice) -> None:
        seen.append(notice)
        fired.set()

    watcher = InterruptionWatcher(Imds(imds.url), on_notice, interval=0.05).start()
    assert not fired.wait(0.3)
    imds.schedule_interruption(in_seconds=90)
    assert fired.wait(5)
    watcher.stop()
    assert len(seen) == 1 and seen[0].action == "terminate"


def test_watcher_survives_an_unreachable_imds() -> None:
    fake = FakeImds()
    url = fake.url
    fake.close()  # nothing listens there any more
    fired = threading.Event()
    watcher = InterruptionWatcher(Imds(url, timeout=0.2), lambda n: fired.set(), interval=0.05).start()
    assert not fired.wait(0.5)
    assert watcher._thread.is_alive()  # it keeps polling instead of dying
    watcher.stop()
