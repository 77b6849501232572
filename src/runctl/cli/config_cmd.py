"""``runctl init`` and ``runctl config show|validate|path``."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from runctl.cli import render
from runctl.cli.options import OutputOpt
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE

app = typer.Typer(help="Show and check the configuration.", no_args_is_help=True)


def init(
    path: Annotated[Path, typer.Argument(help="Where to write it.")] = Path(".runctl.toml"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented .runctl.toml with every key and its default."""
    from runctl.core.errors import StateDirError, ValidationError

    if path.exists() and not force:
        raise ValidationError(f"{path} already exists", hint="use --force to overwrite it")
    if path.is_dir():
        raise ValidationError(f"{path} is a directory", hint=f"give a file name: {path / '.runctl.toml'}")
    template = resources.files("runctl").joinpath("templates/runctl.toml").read_text()
    try:
        path.write_text(template)
    except OSError as exc:
        raise StateDirError(
            f"cannot write {path}: {exc.strerror}",
            hint=f"check that {path.parent} exists and is a writable directory, or give another path",
            operation="init",
        ) from None
    render.info(f"wrote {path}")


def to_toml(data: dict[str, dict[str, Any]]) -> str:
    """Sections of scalars and lists as TOML; unset keys become comments."""
    lines: list[str] = []
    for section, body in data.items():
        lines.append(f"[{section}]")
        for key, value in body.items():
            if value is None:
                lines.append(f"# {key} = (unset)")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)


@app.command("show")
def show(output: OutputOpt = OutputFormat.table) -> None:
    """Print the effective configuration (secrets masked) and where it came from."""
    from runctl.core.config import redacted_dump

    loaded = STATE.loaded()
    data = redacted_dump(loaded.config)
    if output is OutputFormat.json:
        render.print_json({"config": data, "files": [str(f) for f in loaded.files], "env": loaded.env_keys})
        return
    sources = [f"# from {f}" for f in loaded.files] + [f"# from ${k}" for k in loaded.env_keys]
    render.console().print("\n".join(sources or ["# built-in defaults only"]), markup=False)
    render.console().print(to_toml(data), markup=False)


@app.command("validate")
def validate() -> None:
    """Check the configuration; exit 78 with the problems if it is invalid."""
    loaded = STATE.loaded()
    where = ", ".join(str(f) for f in loaded.files) or "built-in defaults"
    render.console().print(f"configuration is valid ({where})", markup=False)


@app.command("path")
def path_(output: OutputOpt = OutputFormat.table) -> None:
    """Show which config files are looked for and which exist, and the state directory."""
    from runctl.core.paths import find_project_config, state_dir, user_config_path

    project = STATE.config_path or find_project_config()
    data = {
        "project": str(project) if project else None,
        "user": str(user_config_path()),
        "user_exists": user_config_path().is_file(),
        "state_dir": str(state_dir()),
    }
    if output is OutputFormat.json:
        render.print_json(data)
    else:
        render.fields([(k, v) for k, v in data.items()])
