"""How runctl writes money and durations for people: one formatter each, used by the CLI, the
TUI and the budget messages alike, so a figure reads the same wherever it appears.

* **Money** (:func:`usd`): cents from a dollar up (``$12.35``, ``$1,204.00``), four decimals
  below (``$0.0104``), where GPU-seconds are billed; a rate (``per_hour=True``) keeps up to four
  decimals with trailing zeros trimmed to cents (``$1.006/h``, ``$0.0104/h``, ``$0.69/h``):
  catalogue prices are that fine. Negative amounts (refunds, corrections) follow the same rule by
  size.
* **Durations** (:func:`duration`): whole seconds as ``1h02m03s``, or ``2m03s`` under an hour.

An unknown value (``None``) is written as an empty string: a table cell stays blank.
(Durations and sizes are *parsed* from configuration by :mod:`runctl.core.config`.)
"""

from __future__ import annotations


def usd(amount: float | None, *, per_hour: bool = False) -> str:
    """``amount`` in US dollars (see the module docstring); ``per_hour`` writes it as a rate."""
    if amount is None:
        return ""
    if per_hour:
        text = f"{amount:,.4f}".rstrip("0")
        return f"${text}{'0' * max(0, 2 - len(text.split('.')[1]))}/h"
    return f"${amount:,.4f}" if abs(amount) < 1 else f"${amount:,.2f}"


def duration(seconds: float | None) -> str:
    """``seconds`` as ``1h02m03s`` (``2m03s`` under an hour); fractions of a second are dropped."""
    if seconds is None:
        return ""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
