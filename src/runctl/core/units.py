"""How runctl writes money and durations for people: one formatter each, used by the CLI, the
TUI and the budget messages alike, so a figure reads the same wherever it appears.

* **Money** (:func:`usd`): cents from a dollar up (``$12.35``, ``$1,204.00``), four decimals
  below (``$0.0104``), where GPU-seconds are billed; a rate (``per_hour=True``) keeps up to four
  decimals with trailing zeros trimmed to cents (``$1.006/h``, ``$0.0104/h``, ``$0.69/h``):
  catalogue prices are that fine. A negative amount (a correction) is written ``-$0.2500``.
* **Durations** (:func:`duration`): whole seconds as ``1h02m03s`` (``2m03s`` under an hour),
  zero units at the end left out (``2h``, ``1h30m``, ``45s``).

An unknown value (``None``) is written as an empty string: a table cell stays blank.
(Durations and sizes are *parsed* from configuration by :mod:`runctl.core.config`.)
"""

from __future__ import annotations


def usd(amount: float | None, *, per_hour: bool = False) -> str:
    """``amount`` in US dollars (see the module docstring); ``per_hour`` writes it as a rate."""
    if amount is None:
        return ""
    sign, size = ("-" if amount < 0 else ""), abs(amount)
    if per_hour:
        text = f"{size:,.4f}".rstrip("0")
        return f"{sign}${text}{'0' * max(0, 2 - len(text.split('.')[1]))}/h"
    return f"{sign}${size:,.4f}" if size < 1 else f"{sign}${size:,.2f}"


def duration(seconds: float | None) -> str:
    """``seconds`` as ``1h02m03s``, ``2m03s``, ``45s``, with zero units at the end left out
    (``2h``, ``1h30m``, ``10m``): a running time and a limit read the same way. Fractions of a
    second are dropped."""
    if seconds is None:
        return ""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:  # leading zero units
        parts.pop(0)
    while len(parts) > 1 and parts[-1][0] == 0:  # trailing zero units
        parts.pop()
    first, *rest_parts = parts
    return f"{first[0]}{first[1]}" + "".join(f"{value:02d}{unit}" for value, unit in rest_parts)
