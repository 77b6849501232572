"""What every docs-page generator shares: write the page, or with ``--check`` say it is stale."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main_for(page: Path, render: Callable[[], str], script: str, argv: list[str] | None = None) -> int:
    """``script``'s command line: write ``render()`` to ``page``; ``--check``: exit 1 if stale."""
    parser = argparse.ArgumentParser(description=f"Regenerate {page.relative_to(REPO)}.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed page is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not page.is_file() or page.read_text() != text:
            print(f"{page.relative_to(REPO)} is stale: run scripts/{Path(script).name} to update it")
            return 1
        return 0
    page.write_text(text)
    print(f"wrote {page.relative_to(REPO)}")
    return 0
