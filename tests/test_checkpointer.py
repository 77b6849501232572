"""runctl.Checkpointer: the in-script helper (pickle and torch paths, resume, keep-last-N, and
stop_requested set by real signals)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runctl import Checkpointer
from tests.conftest import REPO

SCRIPTS = REPO / "tests" / "scripts"


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """Checkpointer installs SIGTERM/SIGINT handlers for good; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(autouse=True)
def _pickle_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpointer uses torch when the process imported it; these tests check the pickle path."""
    monkeypatch.delitem(sys.modules, "torch", raising=False)


def wait_until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_save_and_load_round_trip_with_pickle(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "c", handle_signals=False)
    assert ckpt.directory.is_dir()
    assert ckpt.latest() is None
    assert ckpt.load() is None
    state = {"step": 7, "weights": [1.5, 2.5], "nested": {"lr": 0.1}}
    path = ckpt.save(state, 7)
    assert path.name == "ckpt-00000007.pkl"
    assert ckpt.latest() == path
    assert ckpt.load() == state
    ckpt.save({"step": 12}, 12)
    assert ckpt.load() == {"step": 12}
    assert ckpt.load(path) == state  # an explicit older one
    assert [p.name for p in ckpt.checkpoints()] == ["ckpt-00000007.pkl", "ckpt-00000012.pkl"]
    assert not [p for p in ckpt.directory.iterdir() if p.name.startswith(".")]  # no temp left


def test_negative_step_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Checkpointer(tmp_path, handle_signals=False).save({}, -1)


def test_directory_comes_from_runctl_then_defaults_to_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCTL_CHECKPOINT_DIR", str(tmp_path / "from-runctl"))
    assert Checkpointer(handle_signals=False).directory == tmp_path / "from-runctl"
    monkeypatch.delenv("RUNCTL_CHECKPOINT_DIR")
    monkeypatch.chdir(tmp_path)
    ckpt = Checkpointer(handle_signals=False)
    assert ckpt.directory == Path("checkpoints")
    assert (tmp_path / "checkpoints").is_dir()


def test_resume_from_falls_back_to_the_previous_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = Checkpointer(tmp_path / "attempt1", handle_signals=False).save({"step": 40}, 40)
    monkeypatch.setenv("RUNCTL_RESUME_FROM", str(previous))
    ckpt = Checkpointer(tmp_path / "attempt2", handle_signals=False)
    assert ckpt.latest() == previous
    assert ckpt.load() == {"step": 40}
    own = ckpt.save({"step": 50}, 50)
    assert ckpt.latest() == own  # its own newer checkpoint wins from then on
    monkeypatch.setenv("RUNCTL_RESUME_FROM", str(tmp_path / "gone.pkl"))
    assert Checkpointer(tmp_path / "attempt3", handle_signals=False).latest() is None


def test_keep_last_n_prunes_after_each_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = Checkpointer(tmp_path / "a", keep_last_n=2, handle_signals=False)
    for step in range(1, 6):
        ckpt.save({"step": step}, step)
    assert [p.name for p in ckpt.checkpoints()] == ["ckpt-00000004.pkl", "ckpt-00000005.pkl"]

    monkeypatch.setenv("RUNCTL_KEEP_LAST_N", "3")  # what runctl passes from [checkpoint] keep_last_n
    from_env = Checkpointer(tmp_path / "b", handle_signals=False)
    assert from_env.keep_last_n == 3
    for step in range(1, 6):
        from_env.save({"step": step}, step)
    assert len(from_env.checkpoints()) == 3


def test_sigterm_sets_stop_requested(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path)
    assert not ckpt.stop_requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert wait_until(lambda: ckpt.stop_requested)
    assert ckpt.stop_signal == signal.SIGTERM


def test_first_sigint_asks_to_stop_second_one_interrupts(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path)
    os.kill(os.getpid(), signal.SIGINT)
    assert wait_until(lambda: ckpt.stop_requested)
    assert ckpt.stop_signal == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises here


def test_handle_signals_false_leaves_handlers_alone(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    Checkpointer(tmp_path, handle_signals=False)
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_script_saves_and_exits_on_a_real_signal(tmp_path: Path, sig: signal.Signals) -> None:
    env = {**os.environ, "RUNCTL_CHECKPOINT_DIR": str(tmp_path / "ck")}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "cooperative.py"), "100000", "1000", "0.01"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ready")
    assert proc.stdout.readline().startswith("step=")  # it is in its loop
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    stopped = [line for line in out.splitlines() if line.startswith("stopped at step")]
    assert stopped and stopped[0].endswith(f"by {sig.name}")
    step = int(stopped[0].split()[3])
    saved = Checkpointer(tmp_path / "ck", handle_signals=False)
    assert saved.load() == {"step": step}  # saved at the very step it stopped, not the last periodic one


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_torch_path_when_the_script_imported_torch(tmp_path: Path) -> None:
    code = """
import sys, torch
from runctl import Checkpointer
ckpt = Checkpointer(sys.argv[1], handle_signals=False)
state = {"step": 3, "w": torch.arange(6.0).reshape(2, 3)}
path = ckpt.save(state, 3)
loaded = ckpt.load()
assert path.suffix == ".pt", path
assert loaded["step"] == 3 and torch.equal(loaded["w"], state["w"])
torch.load(path)  # a plain torch checkpoint, readable without runctl
print(path.name)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ckpt-00000003.pt"
