"""`python -m searchctl.cli`."""

from searchctl.cli import app

app()
