"""Regenerate every generated docs page (the CLI and config references) in one command.

``python scripts/gen_reference.py`` rewrites them; ``--check`` exits 1 if any committed page is
stale. ``./dev docs --regen`` runs this, then builds the site.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_cli_reference
import gen_config_reference

GENERATORS = (gen_cli_reference, gen_config_reference)


def main(argv: list[str] | None = None) -> int:
    return max(generator.main(argv) for generator in GENERATORS)


if __name__ == "__main__":
    sys.exit(main())
