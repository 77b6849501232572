"""runctl's error hierarchy under its public name: ``from runctl.errors import RunctlError``.

The classes are defined in :mod:`runctl.core.errors` (everything inside runctl imports them
from there); this module is their public face, the same objects under a shorter path.
"""

from runctl.core.errors import *  # noqa: F403
from runctl.core.errors import __all__ as __all__
