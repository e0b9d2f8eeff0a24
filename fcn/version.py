"""The version of fcn, written once: ``fcn.__version__`` and the package metadata (pyproject.toml) read it here.

A module of its own so that fcn's modules can name the version without importing the package ``fcn``, which
imports them.
"""

__version__ = "0.1.0"
