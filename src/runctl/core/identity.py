"""Who runs runctl here: the user name recorded on what runctl creates.

It is the ``runctl:user`` tag of every cloud resource and the owner ``resources reconcile`` checks
before adopting one (a resource tagged by another user belongs in that user's ledger). The login
name of the process; ``unknown`` where there is none (some containers).
"""

from __future__ import annotations

import getpass


def current_user() -> str:
    """The login name of this process, or ``unknown``."""
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers (no passwd entry, no LOGNAME)
        return "unknown"
