"""`python -m searchctl.cli`."""

from searchctl.cli import run

run()
