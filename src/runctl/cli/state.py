"""What every command shares: global options, and the config and ledger, loaded on demand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runctl.core.config import LoadedConfig
    from runctl.core.ledger import Ledger


@dataclass
class CliState:
    config_path: Path | None = None
    debug: bool = False
    _loaded: LoadedConfig | None = None
    _ledger: Ledger | None = None

    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            from runctl.core.config import load_config

            self._loaded = load_config(self.config_path)
        return self._loaded

    def ledger(self) -> Ledger:
        if self._ledger is None:
            from runctl.core.ledger import Ledger

            self._ledger = Ledger.open_default()
        return self._ledger


STATE = CliState()
