"""What every command shares: global options, and the config and ledger, loaded on demand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runctl.core.config import LoadedConfig
    from runctl.core.ledger import Ledger
    from runctl.core.logs import LogFormat


@dataclass
class CliState:
    config_path: Path | None = None
    debug: bool = False
    log_format: LogFormat | None = None  # --log-format; None: [monitoring] log_format decides
    verbosity: int = 0  # -1 with -q, else the number of -v
    _loaded: LoadedConfig | None = None
    _ledger: Ledger | None = None

    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            from runctl.core.config import load_config
            from runctl.core.logs import add_secret, apply_config_format

            loaded = load_config(self.config_path)
            key = loaded.config.runpod.api_key
            add_secret(key.get_secret_value() if key else None)
            monitoring = loaded.config.monitoring
            apply_config_format(monitoring.log_format)
            if monitoring.textfile_dir or monitoring.pushgateway_url or monitoring.metrics_port:
                import runctl.core.metrics  # noqa: F401  (collect from the start: it will be exported)
            self._loaded = loaded
        return self._loaded

    def export_metrics(self) -> None:
        """At exit: write the textfile / push to the Pushgateway if this command produced
        metrics (it imported the metrics module) and the config asks for it."""
        import sys

        if "runctl.core.metrics" not in sys.modules:
            return
        from runctl.core import metrics
        from runctl.core.errors import RunctlError

        try:
            monitoring = self.loaded().config.monitoring
            if monitoring.textfile_dir is None and not monitoring.pushgateway_url:
                return
            metrics.use_ledger(self.ledger())
        except RunctlError:
            return  # the command already reported a broken config or ledger
        metrics.export_on_exit(monitoring)

    def ledger(self) -> Ledger:
        if self._ledger is None:
            from runctl.core.ledger import Ledger

            self._ledger = Ledger.open_default()
        return self._ledger


STATE = CliState()
