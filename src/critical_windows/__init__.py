"""critical-windows: find where a language model makes up its mind."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("critical-windows")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
