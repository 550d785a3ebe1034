"""searchctl: visual search and auto-tagging for fashion catalogs."""

__version__ = "0.1.0"
