"""The code blocks of the README and the docs, collected and run: a small collector of our own
(not pytest-examples, which has no notion of a page's blocks sharing a directory and a ledger).

The rule, for every Markdown page under ``docs/`` and the README:

* every fenced block whose language is ``sh``, ``bash`` or ``python`` runs, in page order, in
  one working directory and one state directory per page (a page is a session a reader types);
* a block whose fence has a file title (mkdocs-material's ``title="train.py"``) is that file:
  it is written into the working directory, not run;
* a block is skipped on purpose only when the line before it (blank lines aside) is
  ``<!-- test: skip (why) -->``; the reason is required;
* other languages (``text``, ``toml``, ``json``, ``console`` …) never run: synopses and sample
  output go there. TOML blocks are still checked against the config models by
  ``tests/test_docs.py``.

Shell blocks run with ``bash -e`` (a failing line fails the block); Python blocks with the
interpreter running the tests. The caller supplies the environment: the tests point AWS at the
moto server and RunPod at its fake, with the machine and pod simulators running.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN_LANGUAGES = {"sh", "bash", "python"}
SKIP_RE = re.compile(r"^<!--\s*test:\s*skip\s*(?:\((?P<reason>[^)]*)\))?\s*-->$")
MARKER_RE = re.compile(r"^<!--\s*test:")
FENCE_RE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)\s*(?P<lang>[\w+-]*)(?P<attrs>.*)$")
TITLE_RE = re.compile(r'title="(?P<title>[^"]+)"')


@dataclass
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    title: str | None
    skip: str | None  # the reason, when marked to skip
    marker: str | None  # the raw marker line before the block, if any

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN_LANGUAGES and self.skip is None


def pages() -> list[Path]:
    """The README and every docs page."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, in order."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    marker: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        match = FENCE_RE.match(line)
        if match:
            indent, fence = match.group("indent"), match.group("fence")
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence):
                body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
                j += 1
            skip = SKIP_RE.match(marker) if marker else None
            title = TITLE_RE.search(match.group("attrs"))
            found.append(
                Block(
                    page=page,
                    line=i + 1,
                    lang=match.group("lang").lower(),
                    code="\n".join(body) + "\n",
                    title=title.group("title") if title else None,
                    skip=(skip.group("reason") or "").strip() if skip else None,
                    marker=marker,
                )
            )
            marker = None
            i = j + 1
            continue
        if MARKER_RE.match(stripped):
            marker = stripped
        elif stripped:
            marker = None
        i += 1
    return found


def run(
    block: Block, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run one block (or write it, when it is a titled file) in ``cwd``; raise with its output
    when it fails."""
    if block.title:
        (cwd / block.title).write_text(block.code)
        return subprocess.CompletedProcess([], 0, "", "")
    shell = block.lang in ("sh", "bash")
    command = ["bash", "-e", "-c", block.code] if shell else [sys.executable, "-c", block.code]
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{block.where}: the {block.lang} block exited {proc.returncode}\n--- block\n{block.code}"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc
