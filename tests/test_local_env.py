"""``runctl local --setup / --python / --deps auto``: opt-in environment steps for a local run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import run_cli
from tests.test_remote_setup import tiny_wheel

SCRIPT = "import sys\nprint('interpreter', sys.executable, flush=True)\n"


def test_setup_runs_first_and_its_failure_records_nothing(tmp_path: Path) -> None:
    (tmp_path / "which.py").write_text(SCRIPT)
    ok = run_cli("local", "which.py", "--setup", "echo hi > setup-ran.txt", "-o", "json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "setup-ran.txt").read_text() == "hi\n"
    bad = run_cli("local", "which.py", "--setup", "echo no torch here; exit 4", cwd=tmp_path)
    assert bad.returncode == 80 and "setup exited with 4" in bad.stderr and "no torch here" in bad.stderr
    jobs = json.loads(run_cli("jobs", "list", "-o", "json").stdout)
    assert len(jobs) == 1  # the refused run left no job behind


def test_python_and_deps_auto(tmp_path: Path) -> None:
    (tmp_path / "which.py").write_text(SCRIPT)
    interpreter = tmp_path / "other-python"
    interpreter.symlink_to(sys.executable)
    named = run_cli("local", "which.py", "--python", str(interpreter), cwd=tmp_path)
    assert f"interpreter {interpreter}" in named.stdout, named.stderr
    index = tmp_path / "index"
    tiny_wheel(index)
    (tmp_path / "requirements.txt").write_text("tinydep==1.0\n")
    (tmp_path / "dep.py").write_text("import tinydep, sys\nprint(tinydep.VALUE, sys.prefix)\n")
    env = {"PIP_FIND_LINKS": str(index), "PIP_NO_INDEX": "1", "HOME": str(tmp_path / "home")}
    plain = run_cli("local", "dep.py", cwd=tmp_path, env=env)
    assert plain.returncode != 0  # opt-in: without --deps auto nothing is installed
    auto = run_cli("local", "dep.py", "--deps", "auto", cwd=tmp_path, env=env)
    assert auto.returncode == 0, auto.stderr
    assert "tinydep works" in auto.stdout and ".runctl/envs/" in auto.stdout
