"""What runctl creates is private whatever the umask (issue 14): directories 0700, files 0600;
an existing state directory others can read is warned about, once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runctl.core.ledger import LEDGER_FILE, Ledger


def run_with_umask(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runctl", *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, umask=0)  # fmt: skip


def modes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mode & 0o777 for p in root.rglob("*")}


def test_a_local_run_under_umask_0_creates_only_private_files(tmp_path: Path, isolated_env: Path) -> None:
    (tmp_path / "t.py").write_text("print('hello')\n")
    metrics = tmp_path / "metrics" / "textfiles"
    result = run_with_umask(["local", "t.py"], tmp_path, {"RUNCTL_MONITORING__TEXTFILE_DIR": str(metrics)})
    assert result.returncode == 0, result.stderr
    assert "can be read by" not in result.stderr  # created private: nothing to warn about
    created = {**modes(isolated_env), **{f"metrics/{k}": v for k, v in modes(tmp_path / "metrics").items()}}
    assert {"ledger.db", "logs", "checkpoints", "metrics/textfiles/runctl.prom"} <= set(created)
    assert any(name.startswith("logs/j-") for name in created)
    opened = {name: oct(mode) for name, mode in created.items() if mode & 0o077}
    assert not opened, opened
    assert isolated_env.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "metrics").stat().st_mode & 0o777 == 0o700  # a parent runctl had to make


def test_the_ledgers_wal_and_shm_are_private_too(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with Ledger(tmp_path / LEDGER_FILE) as ledger:
            ledger.add_event("x", "y")
            found = modes(tmp_path)
    finally:
        os.umask(old)
    assert {"ledger.db", "ledger.db-wal", "ledger.db-shm"} <= set(found)
    assert all(mode == 0o600 for mode in found.values()), found


def test_an_open_state_dir_is_warned_about_once(tmp_path: Path, isolated_env: Path) -> None:
    isolated_env.mkdir(mode=0o755)
    isolated_env.chmod(0o755)
    (tmp_path / "t.py").write_text("print('hello')\n")
    result = run_with_umask(["local", "t.py"], tmp_path, {})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "can be read by" in line]
    assert len(warnings) == 1, result.stderr
    assert str(isolated_env) in warnings[0] and f"chmod 700 {isolated_env}" in warnings[0]
    assert isolated_env.stat().st_mode & 0o777 == 0o755  # the user's directory: told, not changed
