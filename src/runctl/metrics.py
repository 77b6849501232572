"""runctl's Prometheus metrics and their exporters under their public name:
``runctl.metrics.serve(9464)``, ``from runctl.metrics import use_ledger``.

Defined in :mod:`runctl.core.metrics` (importing this module imports prometheus-client).
"""

from runctl.core.metrics import *  # noqa: F403
from runctl.core.metrics import __all__ as __all__
