"""The docs tell the truth: the generated references are current, every command, option and
config key the README and the docs mention exists (and every one that exists is documented),
the site builds strictly, and the examples run (the collector: ``tests/support/doc_blocks.py``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.conftest import REPO, run_cli
from tests.support import doc_blocks
from tests.support.fake_runpod import FakeRunpod
from tests.support.machine_sim import MachineSimulator
from tests.support.pod_sim import PodSimulator

GETTING_STARTED = [
    REPO / "docs" / "getting-started" / name
    for name in ("install.md", "first-local-run.md", "first-ec2-run.md", "first-runpod-run.md")
]


@pytest.fixture
def reader_env(
    aws: str, runpod_fake: FakeRunpod, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """What a reader's shell has: AWS (moto, with the machine simulator playing EC2 and the
    docs' bucket), RunPod (the fake, with the pod simulator), runctl on PATH, a fresh state."""
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="my-runctl-bucket")
    machines = MachineSimulator(tmp_path / "machines", aws)
    pods = PodSimulator(runpod_fake, tmp_path / "pods")
    yield {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    machines.close()
    pods.close()


def run_pages(pages: list[Path], cwd: Path, env: dict[str, str]) -> None:
    for page in pages:
        for block in doc_blocks.blocks(page):
            if block.runs:
                doc_blocks.run(block, cwd, env)


@pytest.mark.slow
def test_getting_started_runs_from_nothing_to_a_cost_report(
    reader_env: dict[str, str], tmp_path: Path
) -> None:
    cwd = tmp_path / "my-project"
    cwd.mkdir()
    run_pages(GETTING_STARTED, cwd, reader_env)

    jobs = json.loads(run_cli("jobs", "list", "-o", "json", cwd=cwd).stdout)
    local = sorted((j for j in jobs if j["provider"] == "local"), key=lambda j: j["created_at"])
    assert [j["state"] for j in local] == ["succeeded", "interrupted", "succeeded"], local
    resumed_log = run_cli("logs", local[2]["id"], cwd=cwd).stdout
    stopped = run_cli("logs", local[1]["id"], cwd=cwd).stdout.split("stopped at step ")[1].split()[0]
    assert f"resumed from step {stopped}" in resumed_log  # nothing lost
    remote = {j["provider"]: j for j in jobs if j["provider"] != "local"}
    assert remote["aws"]["state"] == "succeeded" and remote["runpod"]["state"] == "succeeded", remote
    ec2 = boto3.client("ec2", region_name="us-east-1").describe_instances()["Reservations"]
    assert [i["State"]["Name"] for r in ec2 for i in r["Instances"]] == ["terminated"]  # nothing leaks
    report = json.loads(run_cli("cost", "report", "--by", "provider", "-o", "json", cwd=cwd).stdout)
    assert report


# --- the generated references are current ---------------------------------------------------


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("generator", ["gen_cli_reference", "gen_config_reference"])
def test_the_committed_generated_references_are_current(generator: str) -> None:
    module = _script(generator)
    page = module.PAGE
    assert page.is_file() and page.read_text() == module.render(), (
        f"{page.relative_to(REPO)} is stale: run scripts/{generator}.py "
        "(or ./dev docs --regen, which regenerates every reference) to update it"
    )


# --- what the docs name exists, and what exists is documented ------------------------------


@dataclass
class Command:
    path: tuple[str, ...]
    options: dict[str, bool]  # every name (--long, -s, --no-x) → takes a value
    subcommands: dict[str, Command] = field(default_factory=dict)


def command_tree() -> Command:
    gen = _script("gen_cli_reference")

    def build(command: Any, path: tuple[str, ...]) -> Command:
        options = {
            name: not (opt.is_flag or opt.count)
            for opt in gen.visible_options(command)
            for name in [*opt.opts, *opt.secondary_opts]
        }
        options |= {"--help": False, "-h": False}
        node = Command(path, options)
        for name, sub in (getattr(command, "commands", {}) or {}).items():
            if not sub.hidden:
                node.subcommands[name] = build(sub, (*path, name))
        return node

    return build(gen.root_command(), ("runctl",))


def all_commands(node: Command) -> Iterator[Command]:
    yield node
    for sub in node.subcommands.values():
        yield from all_commands(sub)


HAND_WRITTEN = [p for p in doc_blocks.pages() if p.name not in ("cli.md", "config.md")]
CODE_SPAN = re.compile(r"`([^`\n]+)`")
RUNCTL = re.compile(r"(?<![\w./:<-])runctl(?![\w./:>-])")
OPTION = re.compile(r"^-{1,2}[A-Za-z0-9][\w-]*")
WORD = re.compile(r"^[a-z][a-z0-9-]*$")


def code_snippets(page: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every inline code span, and every command of a shell or text block, with
    its comments and quoted strings blanked (a line that starts with whitespace continues the
    one before, as in a wrapped synopsis). Python blocks are code, not commands."""
    text = page.read_text()
    for block in doc_blocks.blocks(page):
        if block.lang == "python":
            continue
        command: str | None = None
        start = block.line + 1
        for offset, raw in enumerate(block.code.splitlines(), start=block.line + 1):
            line = re.sub(r"(^|\s)#.*$", "", re.sub(r"\"[^\"]*\"|'[^']*'", "STR", raw))
            if command is not None and line[:1].isspace() and "runctl" not in line:
                command += " " + line.strip()
                continue
            if command is not None:
                yield start, command
            command, start = line, offset
        if command is not None:
            yield start, command
    in_block = False
    for number, line in enumerate(text.splitlines(), start=1):
        if doc_blocks.FENCE_RE.match(line):
            in_block = not in_block
        elif not in_block:
            for span in CODE_SPAN.findall(line):
                yield number, span


def runctl_mentions(snippet: str) -> Iterator[list[str]]:
    """The words after each ``runctl`` of a snippet, up to the script's arguments (``--``), a
    comment or the next shell command."""
    for match in RUNCTL.finditer(snippet):
        if re.search(r"\b(from|import)\s+$", snippet[: match.start()]):
            continue  # Python: `from runctl import Checkpointer`
        rest = re.split(r"\s--(?:\s|$)|\s#|&&|;|\|\||`|\$\(", snippet[match.end() :])[0]
        yield rest.split()


def check_mention(words: list[str], root: Command) -> Iterator[str]:
    """What is wrong with one ``runctl …`` mention: unknown commands and options."""
    node, takes_value = root, False
    for raw in words:
        word = raw.strip("[](){}\"',.…")
        if takes_value:
            takes_value = False
            continue
        if word.startswith("-") and OPTION.match(word):
            for part in re.split(r"[|/]", word):
                name = OPTION.match(part.strip("[]"))
                if not name:
                    continue
                names = [name.group(0)]
                if re.fullmatch(r"-[A-Za-z]{2,}", names[0]):  # -vv: a cluster of short options
                    names = [f"-{c}" for c in names[0][1:]]
                for option in names:
                    if option not in node.options:
                        yield f"{' '.join(node.path)} has no option {option}"
                    else:
                        takes_value = node.options[option] and "=" not in part
        elif node.subcommands and WORD.match(word):
            if word not in node.subcommands:
                yield f"{' '.join(node.path)} has no command {word!r}"
                return
            node = node.subcommands[word]
        elif node.subcommands:
            return  # COMMAND, ..., a placeholder: the rest is not ours to check


def test_every_command_and_option_the_docs_name_exists() -> None:
    root = command_tree()
    problems = [
        f"{page.relative_to(REPO)}:{line}: {problem} (in {snippet.strip()!r})"
        for page in HAND_WRITTEN
        for line, snippet in code_snippets(page)
        for words in runctl_mentions(snippet)
        for problem in check_mention(words, root)
    ]
    assert not problems, "documented but not in the CLI:\n" + "\n".join(problems)


def test_the_option_checker_catches_what_does_not_exist() -> None:
    root = command_tree()
    wrong = "runctl aws train new train.py --iam-instance-profil X --spot -- --lr 3"
    assert [p for w in runctl_mentions(wrong) for p in check_mention(w, root)] == [
        "runctl aws train has no option --iam-instance-profil"
    ]
    assert list(check_mention(["jobs", "frobnicate"], root)) == ["runctl jobs has no command 'frobnicate'"]
    assert list(check_mention(["--log-format", "json", "-vv", "local", "x.py", "--name", "n"], root)) == []
    assert list(check_mention(["jobs", "wait", "J", "--poll-interval", "1s"], root))  # hidden: not for users


def test_every_command_and_option_is_documented() -> None:
    reference = (REPO / "docs" / "reference" / "cli.md").read_text()
    sections = dict(re.findall(r"^#+ (runctl(?: [\w-]+)*)\n(.*?)(?=^#+ runctl|\Z)", reference, re.M | re.S))
    guides = "\n".join(p.read_text() for p in HAND_WRITTEN)
    missing = []
    for node in all_commands(command_tree()):
        name = " ".join(node.path)
        if name not in sections:
            missing.append(f"{name}: no section in docs/reference/cli.md")
            continue
        missing += [
            f"{name} {option}: not in its docs/reference/cli.md section"
            for option in node.options
            if option not in ("--help", "-h")
            and not re.search(rf"`[^`]*{re.escape(option)}\b", sections[name])
        ]
        if len(node.path) > 1 and not node.subcommands and name.removeprefix("runctl ") not in guides:
            missing.append(f"{name}: named in no guide (README or docs/, besides the generated reference)")
    assert not missing, "\n".join(missing)


def test_every_option_and_command_has_a_help_text() -> None:
    gen = _script("gen_cli_reference")
    bare = [
        f"{' '.join(path)} {opt.opts[0]}"
        for path, command in gen.walk(gen.root_command())
        for opt in gen.visible_options(command)
        if not (opt.help or "").strip()
    ]
    bare += [" ".join(p) for p, command in gen.walk(gen.root_command()) if not (command.help or "").strip()]
    assert not bare, f"these have no help text (it is the CLI reference's text): {bare}"


def config_keys() -> dict[str, dict[str, Any]]:
    sections = _script("gen_config_reference").sections()
    return {section: dict(model.model_fields) for section, model in sections.items()}


def test_every_config_key_the_docs_name_exists() -> None:
    keys = config_keys()
    problems = []

    def check(where: str, section: str, key: str | None) -> None:
        if section not in keys:
            problems.append(f"{where}: no config section [{section}]")
        elif key is not None and key not in keys[section]:
            problems.append(f"{where}: no config key [{section}] {key}")

    for page in [*HAND_WRITTEN, REPO / "docs" / "reference" / "cli.md"]:
        rel = page.relative_to(REPO)
        for line, snippet in code_snippets(page):
            for section, key in re.findall(r"(?<![\w\[])\[([a-z_]+)\](?:\s+([a-z_][a-z0-9_]*)\b)?", snippet):
                if not re.search(rf"\[{section}\]\s*\(", snippet):  # a Markdown link, not a table
                    check(f"{rel}:{line}", section, key or None)
        text = page.read_text()
        for section, key in re.findall(r"RUNCTL_([A-Z]+)__([A-Z0-9_]+)", text):
            check(f"{rel}: RUNCTL_{section}__{key}", section.lower(), key.lower())
        for block in doc_blocks.blocks(page):
            if block.lang == "toml":
                for section, body in tomllib.loads(block.code).items():
                    check(f"{block.where} (toml)", section, None)
                    for key in body if section in keys else ():
                        check(f"{block.where} (toml)", section, key)
    assert not problems, "documented but not in runctl.core.config:\n" + "\n".join(problems)


def test_every_config_key_is_documented_with_a_meaning() -> None:
    reference = (REPO / "docs" / "reference" / "config.md").read_text()
    missing = [
        f"[{section}] {key}"
        for section, fields in config_keys().items()
        for key, info in fields.items()
        if f"| `{key}` |" not in reference or not (info.description or "").strip()
    ]
    assert not missing, (
        f"{missing}: give each a docstring under its field in runctl/core/config.py, "
        "then run scripts/gen_config_reference.py"
    )


def test_config_keys_named_in_help_texts_exist() -> None:
    gen = _script("gen_cli_reference")
    keys = config_keys()
    named = {
        (section, key)
        for _, command in gen.walk(gen.root_command())
        for param in command.params
        for section, key in re.findall(r"\b([a-z]+)\.([a-z_]+)\b", getattr(param, "help", "") or "")
        if section in keys
    }
    assert named and all(key in keys[section] for section, key in named), named


def test_the_exit_code_table_is_every_exit_code() -> None:
    from runctl.core.errors import ExitCode

    table = (REPO / "docs" / "reference" / "exit-codes.md").read_text()
    listed = {int(code) for row in re.findall(r"^\| ([\d /]+) \|", table, re.M) for code in row.split("/")}
    assert listed == {int(code) for code in ExitCode}


# --- the site builds, and the examples run ---------------------------------------------------


def test_skipped_blocks_say_why_and_markers_sit_on_a_block() -> None:
    problems = []
    for page in doc_blocks.pages():
        lines = page.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            if not doc_blocks.MARKER_RE.match(line.strip()):
                continue
            match = doc_blocks.SKIP_RE.match(line.strip())
            if not match or not (match.group("reason") or "").strip():
                problems.append(f"{page.relative_to(REPO)}:{number}: write <!-- test: skip (why) -->")
            following = next((next_line for next_line in lines[number:] if next_line.strip()), "")
            if not doc_blocks.FENCE_RE.match(following):
                problems.append(f"{page.relative_to(REPO)}:{number}: the marker is not followed by a block")
    assert not problems, "\n".join(problems)


def test_the_readme_links_to_pages_that_exist() -> None:
    """The README is not part of the site (mkdocs checks the site's links); its own are checked here."""
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (REPO / "README.md").read_text())
    local = [link for link in links if "://" not in link]
    broken = [link for link in local if not (REPO / link).is_file()]
    assert local and not broken, broken


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: `./dev docs` (or ./dev test) installs the docs extra")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-6000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()


OTHER_RUNNABLE_PAGES = [
    page
    for page in doc_blocks.pages()
    if page not in GETTING_STARTED and any(block.runs for block in doc_blocks.blocks(page))
]


@pytest.mark.slow
@pytest.mark.parametrize("page", OTHER_RUNNABLE_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_the_blocks_of_a_page_run(page: Path, reader_env: dict[str, str], tmp_path: Path) -> None:
    cwd = tmp_path / "reader"
    cwd.mkdir()
    run_pages([page], cwd, reader_env)
