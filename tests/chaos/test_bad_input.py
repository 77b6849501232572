"""The bad input corpus (tests/chaos/corpus, see its README): bad configs, bad arguments, bad
URIs and hostile script paths must each end in one clear error line (no traceback), the exit code
docs/reference/exit-codes.md documents, and no change: the ledger's bytes and rows stay as they
were and nothing is sent to the cloud (or, for input only the cloud can judge, nothing but
reads)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runctl.core.ledger import LEDGER_FILE, Ledger
from tests.chaos.checks import ledger_dump
from tests.support.fake_runpod import FakeRunpod
from tests.support.fault_proxy import FaultProxy
from tests.support.hostile_tar import link_chain_escape, plain_escapes
from tests.support.readonly import read_only

CORPUS = Path(__file__).parent / "corpus"
DEFAULT_CONFIG_COMMAND = "aws create t3.micro"
MUTATING_PREFIXES = ("Run", "Terminate", "Create", "Delete", "Attach", "Detach", "Start", "Stop", "Modify")


@dataclass
class Case:
    where: str  # file:line, for the report
    code: int
    argv: list[str]
    text: str
    env: dict[str, str] = field(default_factory=dict)
    reads: bool = False
    config: Path | None = None


def _fields(line: str) -> list[str]:
    return [part.strip() for part in line.split(" | ")]


def _lines(name: str) -> Iterator[tuple[str, list[str]]]:
    for number, line in enumerate((CORPUS / name).read_text().splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            yield f"{name}:{number}", _fields(line)


def _split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for where, parts in _lines("args.txt"):
        env, argv = _split_env(shlex.split(parts[1]))
        cases.append(Case(where, int(parts[0]), argv, parts[2], env, reads=parts[3:] == ["reads"]))
    for where, (code, uri, text) in _lines("uris.txt"):
        cases.append(Case(where, int(code), ["s3", "ls", uri], text))
        if uri.startswith("s3://"):
            cases.append(Case(where + " as [storage] uri", 78, ["config", "validate"], "storage.uri",
                              {"RUNCTL_STORAGE__URI": uri}))  # fmt: skip
    for where, (code, path, text) in _lines("scripts.txt"):
        cases.append(Case(where, int(code), ["local", path], text))
    for config in sorted((CORPUS / "configs").glob("*.toml")):
        header = config.read_bytes().split(b"\n", 1)[0].decode().removeprefix("# expect:")
        parts = _fields(header)
        command = parts[2] if len(parts) > 2 else DEFAULT_CONFIG_COMMAND
        env, argv = _split_env(shlex.split(command))
        cases.append(Case(f"configs/{config.name}", int(parts[0]), argv, parts[1], env, config=config))
    return cases


@pytest.fixture
def seeded_state(tmp_path: Path) -> Path:
    """A ledger with a job, a live resource and events: something bad input could damage."""
    state = tmp_path / "seed-state"
    state.mkdir()
    with Ledger(state / LEDGER_FILE) as ledger:
        job = ledger.create_job(name="seed", provider="aws", script="train.py")
        intent = ledger.record_intent(provider="aws", kind="instance", job_id=job.id, region="us-east-1")
        ledger.mark_created(intent.id, cloud_id="i-0123456789abcdef0", state="running", billable=True,
                            rate_usd_per_hour=0.0104)  # fmt: skip
        ledger.add_event("test.seed", "seeded", job_id=job.id)
    return state


def run_case(case: Case, n: int, root: Path, seed: Path, moto_url: str) -> str | None:
    """Run one case in its own state dir, behind its own recording AWS proxy and RunPod fake;
    returns what went wrong, if anything."""
    home = root / f"case-{n}"
    state = home / "state"
    shutil.copytree(seed, state)
    if case.config is not None:
        shutil.copy(case.config, home / ".runctl.toml")
    proxy, fake = FaultProxy(moto_url), FakeRunpod()
    before = ledger_dump(state / LEDGER_FILE)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNCTL_RETRY__")},  # configs set it
        "RUNCTL_STATE_DIR": str(state),
        "AWS_ENDPOINT_URL": proxy.url,
        **({} if case.config else {"RUNCTL_RUNPOD__API_URL": fake.url}),  # a config file may set it
        "RUNPOD_API_KEY": fake.api_key,
        **case.env,
    }
    try:
        proc = subprocess.run([sys.executable, "-m", "runctl", *case.argv], cwd=home, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    finally:
        proxy.close()
        fake.close()
    out, err = proc.stdout, proc.stderr
    problems = []
    if proc.returncode != case.code:
        problems.append(f"exit {proc.returncode}, expected {case.code}")
    if "Traceback" in out + err:
        problems.append("a traceback")
    error_lines = [line for line in err.splitlines() if line.lower().startswith("error:")]
    if len(error_lines) != 1:
        problems.append(f"{len(error_lines)} error lines")
    if case.text not in err:
        problems.append(f"no {case.text!r} in the error")
    if out.strip():
        problems.append(f"stdout not empty: {out[:200]!r}")
    if ledger_dump(state / LEDGER_FILE) != before:
        problems.append("the ledger changed")
    sent = [r.action or r.method for r in proxy.requests]
    mutations = [a for a in sent if a.startswith(MUTATING_PREFIXES)]
    runpod_sent = fake.requests
    if not case.reads and (sent or runpod_sent):
        problems.append(f"cloud requests for a precheck failure: {sent or len(runpod_sent)}")
    if mutations or any(r.fields and "mutation" in (r.body or {}).get("query", "") for r in runpod_sent):
        problems.append(f"mutating requests: {mutations}")
    if any(p.name == "pwned" for p in home.rglob("*")):
        problems.append("a hostile argument was executed")
    if not problems:
        return None
    return (
        f"{case.where}: runctl {shlex.join(case.argv)}: "
        + "; ".join(problems)
        + f"\n    stderr: {err[-600:]!r}"
    )


def test_bad_input_corpus(aws: str, seeded_state: Path, tmp_path: Path, figures: dict[str, Any]) -> None:
    cases = load_cases()
    assert len(cases) >= 50
    with ThreadPoolExecutor(3) as pool:
        problems = list(
            pool.map(lambda nc: run_case(nc[1], nc[0], tmp_path, seeded_state, aws), enumerate(cases))
        )
    failed = [p for p in problems if p]
    assert not failed, f"{len(failed)} of {len(cases)} cases:\n" + "\n".join(failed)
    codes: dict[str, int] = {}
    for case in cases:
        codes[str(case.code)] = codes.get(str(case.code), 0) + 1
    figures.update(cases=len(cases), by_exit_code=codes, failures=0)


def test_hostile_arguments_reach_the_script_unchanged(tmp_path: Path) -> None:
    args = json.loads((CORPUS / "hostile_args.json").read_text())
    args.append("x" * 100_000)  # long, but under the kernel's limit for one argument
    (tmp_path / "argv.py").write_text(
        "import json, sys\nopen('argv.json', 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    result = subprocess.run([sys.executable, "-m", "runctl", "local", "argv.py", "--", *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "argv.json").read_text()) == args
    assert not list(tmp_path.rglob("pwned"))


def test_a_corrupt_ledger_is_kept_and_refused(isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    junk = b"this is not a database\x00" * 100
    (isolated_env / LEDGER_FILE).write_bytes(junk)
    result = subprocess.run([sys.executable, "-m", "runctl", "jobs", "list"], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 74 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert (isolated_env / LEDGER_FILE).read_bytes() == junk  # never replaced by a fresh one
    backups = list(isolated_env.glob(f"{LEDGER_FILE}.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == junk


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a directory or a link)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() and not p.is_symlink() else None
        for p in root.rglob("*")
    }


def test_hostile_code_bundles_write_nothing_outside(tmp_path: Path, figures: dict[str, Any]) -> None:
    """Each link-escape tarball (CVE-2025-4517's symlink chain, a symlink out, a hard link to an
    absolute path, ``../`` and absolute members, a device) given to ``runctl agent run`` as the
    job's code: one clear error (65), the job ``failed_setup``, nothing written outside the work
    directory, the script never run."""
    site = tmp_path / "s"  # short: the CVE tarball needs a destination path under ~120 characters
    (site / "outside").mkdir(parents=True)
    (site / "outside" / "victim.txt").write_text("original\n")
    bundles = {"cve_2025_4517": link_chain_escape(tmp_path / "cve.tar.gz", up=3, outside="outside")}
    bundles.update(plain_escapes(tmp_path / "plain"))
    problems = []
    for n, (label, bundle) in enumerate(sorted(bundles.items())):
        store, work = site / f"store-{n}", site / f"work-{n}" / "m"
        store.mkdir()
        shutil.copy(bundle, store / "code.tar.gz")
        before = _tree(site / "outside")
        argv = ["agent", "run", "--job-id", f"j-{n}", "--storage", str(store), "--workdir", str(work)]
        proc = subprocess.run([sys.executable, "-m", "runctl", *argv, "train.py"], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        if proc.returncode != 65 or len(errors) != 1 or "code bundle" not in errors[0]:
            problems.append(f"{label}: exit {proc.returncode}, stderr {proc.stderr[-400:]!r}")
        if "Traceback" in proc.stderr or proc.stdout.strip():
            problems.append(f"{label}: a traceback or the script's output")
        if _tree(site / "outside") != before or (site / "escaped.txt").exists() or (site / "out").exists():
            problems.append(f"{label}: something was written outside")
        if Path("/tmp/runctl-escaped-absolute.txt").exists():
            problems.append(f"{label}: an absolute member was written")
        if json.loads((store / "status.json").read_text())["state"] != "failed_setup":
            problems.append(f"{label}: the job is not failed_setup")
        if any((work / "code").rglob("*")):
            problems.append(f"{label}: part of a refused bundle was unpacked")
    assert not problems, "\n".join(problems)
    figures.update(bundles=len(bundles), clear_errors=len(bundles), escapes=0)


def test_an_empty_ledger_is_refused_and_kept(isolated_env: Path, tmp_path: Path) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / LEDGER_FILE).write_bytes(b"")
    (tmp_path / "t.py").write_text("open('ran', 'w').close()\n")
    for args in (["jobs", "list"], ["local", "t.py"], ["resources", "list"]):
        result = subprocess.run([sys.executable, "-m", "runctl", *args], cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        assert result.returncode == 74 and "Traceback" not in result.stderr, result.stderr
        assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
        assert "0 bytes" in result.stderr and f"rm {isolated_env / LEDGER_FILE}" in result.stderr
    assert (isolated_env / LEDGER_FILE).read_bytes() == b""  # never replaced by a fresh one
    assert list(isolated_env.glob(f"{LEDGER_FILE}.corrupt-*"))
    assert not (tmp_path / "ran").exists()


def test_a_read_only_ledger_is_reported_and_left_unchanged(seeded_state: Path, tmp_path: Path) -> None:
    env = {**os.environ, "RUNCTL_STATE_DIR": str(seeded_state)}
    path = seeded_state / LEDGER_FILE
    before = ledger_dump(path)
    with read_only(path):
        doctor = subprocess.run([sys.executable, "-m", "runctl", "doctor", "--timeout", "2", "-o", "json"],
                                env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        listed = subprocess.run([sys.executable, "-m", "runctl", "jobs", "list", "-o", "json"], env=env,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
    check = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}["ledger"]
    assert doctor.returncode == 1 and check["status"] == "fail", doctor.stdout
    assert str(path) in check["message"] and "chmod u+w" in check["fix"]
    assert listed.returncode == 0 and [j["name"] for j in json.loads(listed.stdout)] == ["seed"]
    assert "Traceback" not in doctor.stderr + listed.stderr
    assert ledger_dump(path) == before
