"""``python -m runctl``."""

from runctl.cli.main import main

main()
