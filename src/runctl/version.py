"""runctl's version, in a module that imports nothing: the package metadata reads it
(``[tool.setuptools.dynamic]``) and any layer may import it without importing the package's
public API (``runctl/__init__.py``) along with it."""

__version__ = "0.1.0"
