"""The `searchctl` command line: thin commands over the library (docs/architecture.md).

Each command parses its options, calls one library function and renders what it returns.
"""

from __future__ import annotations

import inspect
import sys
from typing import Annotated

import typer

from searchctl import __version__
from searchctl.cli.catalog import duplicates, migrate
from searchctl.cli.ingest import ingest, tag, train_app
from searchctl.cli.models import audit, info
from searchctl.cli.quiet import filter_native_logs, verbose_asked
from searchctl.cli.search import eval_, query
from searchctl.cli.serve import serve

app = typer.Typer(
    help="Visual search for fashion catalogs: ingest a catalog into Qdrant, query it by photo.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(ingest)
app.command()(query)
app.command("eval")(eval_)
app.add_typer(train_app, name="train")
app.command()(tag)
app.command()(audit)
app.command()(info)
app.command()(duplicates)
app.command()(migrate)
app.command()(serve)


def _version(value: bool) -> None:
    if value:
        print(f"searchctl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            envvar="SEARCHCTL_VERBOSE",
            help="Show TensorFlow's, absl's and CUDA's log lines too (searchctl.cli.quiet).",
        ),
    ] = False,
) -> None:
    """Visual search for fashion catalogs."""


def _unwrap_help(*apps: typer.Typer) -> None:
    """Each command's help is its docstring with the line breaks inside paragraphs removed:
    Typer's rich help keeps a docstring's single line breaks after the first paragraph, so
    text wrapped at 100 columns in the source came out ragged in a terminal."""
    for typer_app in apps:
        for command in typer_app.registered_commands:
            doc = command.help if command.help is not None else inspect.getdoc(command.callback)
            if doc:
                command.help = "\n\n".join(" ".join(p.splitlines()) for p in doc.split("\n\n"))


_unwrap_help(app, train_app)



def run() -> None:
    """The `searchctl` program: the app, on a quiet terminal unless --verbose."""
    if not verbose_asked(sys.argv[1:]):
        filter_native_logs()
    app()


__all__ = ["app", "run"]
