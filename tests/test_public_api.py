"""The public API imports the ordinary way and stays cheap to import.

Each check runs in a fresh interpreter: what a name import loads is only visible there.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import runctl
from tests.conftest import REPO

#: what ``runctl --help`` and ``from runctl import Checkpointer`` must never pay for
HEAVY = ("boto3", "botocore", "httpx", "textual", "pydantic", "prometheus_client", "starlette", "uvicorn")


def fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter; it prints one JSON object as its last line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_every_exported_name_and_the_errors_module_import_the_ordinary_way() -> None:
    found = fresh(
        """
        import json
        import runctl
        for name in runctl.__all__:
            exec(f"from runctl import {name}")
        from runctl.errors import BudgetError, ExitCode, RunctlError
        from runctl.metrics import serve
        import runctl.errors
        print(json.dumps({
            "same": RunctlError is runctl.RunctlError and ExitCode is runctl.ExitCode,
            "budget": issubclass(BudgetError, RunctlError),
            "metrics": serve is runctl.metrics.serve,
            "errors_all": sorted(runctl.errors.__all__),
        }))
        """
    )
    assert found["same"] and found["budget"] and found["metrics"]
    assert {"RunctlError", "ConfigError", "BudgetError", "is_retryable"} <= set(found["errors_all"])


def test_type_checkers_see_the_same_names_the_lazy_table_serves() -> None:
    """The ``if TYPE_CHECKING:`` block of runctl/__init__.py mirrors ``_EXPORTS`` name for name."""
    tree = ast.parse((REPO / "src" / "runctl" / "__init__.py").read_text())
    (block,) = [
        node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    seen: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name}: write 'import X as X' (an explicit re-export)"
            seen[alias.name] = node.module
    lazy = dict(runctl._EXPORTS)
    assert {name: seen.get(name) for name in lazy} == lazy
    assert seen.get("errors") == seen.get("metrics") == "runctl"
    assert set(runctl.__all__) == {*lazy, "__version__"}


def test_help_and_the_in_script_helper_stay_light() -> None:
    found = fresh(
        f"""
        import json, sys
        from runctl import Checkpointer
        helper = sorted({{m.split(".")[0] for m in sys.modules}} - set(sys.stdlib_module_names))
        from runctl.cli.main import main
        try:
            main(["--help"])
        except SystemExit as exc:
            code = exc.code
        loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
        print(json.dumps({{"helper": helper, "help_exit": code, "heavy": loaded}}))
        """
    )
    assert found["help_exit"] in (0, None)
    assert found["heavy"] == [], "runctl --help imported these: import them in the command that needs them"
    assert set(found["helper"]) <= {"runctl", "__main__", "_distutils_hack"}


def test_a_command_loads_only_its_own_module() -> None:
    """`runctl local --help` builds the local command alone; `runctl --help` builds none."""
    found = fresh(
        """
        import json, sys
        from runctl.cli.main import main
        seen = {}
        for argv in (["--help"], ["local", "--help"]):
            try:
                main(argv)
            except SystemExit:
                pass
            seen[" ".join(argv)] = sorted(m for m in sys.modules if m.endswith("_cmd"))
        print(json.dumps(seen))
        """
    )
    assert found == {"--help": [], "local --help": ["runctl.cli.local_cmd"]}


def test_the_top_level_help_lists_the_real_commands() -> None:
    """The lines ``runctl --help`` shows without loading a command are the commands' own."""
    import typer

    from runctl.cli import main

    full: Any = typer.main.get_command(main.app)
    assert list(full.commands) == list(main.COMMANDS)
    for name, (_load, line) in main.COMMANDS.items():
        assert full.commands[name].get_short_help_str(1000) == line, name


def test_a_local_run_loads_no_cloud_ui_or_metrics_library(tmp_path: Path) -> None:
    """`runctl local` (piped, no metrics configured) pays for neither rich nor prometheus-client."""
    (tmp_path / "t.py").write_text("print('hi')\n")
    found = fresh(
        f"""
        import json, os, sys
        os.environ["RUNCTL_STATE_DIR"] = {str(tmp_path / "state")!r}
        os.chdir({str(tmp_path)!r})
        from runctl.cli.main import main
        try:
            main(["local", "--no-resume", "t.py"])
        except SystemExit as exc:
            code = exc.code
        heavy = ("rich", "prometheus_client", "boto3", "botocore", "httpx", "textual")
        print(json.dumps({{"exit": code, "loaded": sorted(m for m in heavy if m in sys.modules)}}))
        """
    )
    assert found == {"exit": 0, "loaded": []}
