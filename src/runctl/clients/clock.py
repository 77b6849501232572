"""How far this machine's clock is from an API endpoint's: AWS refuses requests signed more
than 5 minutes off, so ``doctor`` measures the offset before a job is refused for it.

The measure is the ``Date`` header of any HTTP answer (any status will do), compared with the
middle of the round trip; httpx is imported on first use.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime


def server_clock_offset(url: str, *, timeout: float) -> float | None:
    """Server time minus local time, in seconds, from an HTTP ``Date`` header; None if the
    endpoint cannot be reached or sends no usable date."""
    import httpx

    try:
        before = time.time()
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
        after = time.time()
    except httpx.HTTPError:
        return None
    header = response.headers.get("date")
    if not header:
        return None
    try:
        server = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return None
    return server + 0.5 - (before + after) / 2  # Date has 1 s resolution: compare the middles
