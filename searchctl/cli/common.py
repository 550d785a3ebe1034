"""What every command shares: the consoles, the options, the error handler, the progress bars."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bars

from searchctl.reporting import StageReport

# Piped output (no terminal width) gets room for a whole result row rather than 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="SEARCHCTL_DATA_DIR",
        help="Where the embedded store keeps collections \\[default: ~/.local/share/searchctl].",
        show_default=False,
    ),
]
QdrantUrl = Annotated[
    str | None,
    typer.Option(
        "--qdrant-url",
        envvar="QDRANT_URL",
        help="Use a Qdrant server or cluster (e.g. http://localhost:6333) instead of the "
        "embedded store.",
    ),
]
QdrantApiKey = Annotated[
    str | None,
    typer.Option("--qdrant-api-key", envvar="QDRANT_API_KEY", help="API key for --qdrant-url."),
]
ShardsOpt = Annotated[
    int | None,
    typer.Option(
        min=1, help="Shards of a collection made on a Qdrant cluster (Qdrant's shard_number)."
    ),
]
ReplicasOpt = Annotated[
    int | None, typer.Option(min=1, help="Copies of each shard (Qdrant's replication_factor).")
]
WriteConsistencyOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Replicas that must confirm a write (write_consistency_factor)."),
]
CollectionOpt = Annotated[
    str | None,
    typer.Option("--collection", "-c", help="Collection name \\[default: the only one there is]."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout for scripts.")]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        help="Keras weights file for the backbone (no top). Default: Keras' ImageNet weights, "
        "downloaded once (needs internet).",
    ),
]
MinClassSize = Annotated[
    int, typer.Option(min=1, help="Classes with fewer products are left out of training.")
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Known problems become one clear message and exit code 2, not a traceback; Ctrl-C
    says what is kept and exits 130."""
    from classifier.tagger import ClassifierMissing
    from embedder.collection import EmbedderMismatch
    from embedder.images import BadImage
    from embedder.spec import WeightsUnavailable
    from ingest.catalog import CatalogError
    from qdrant import StoreError

    try:
        yield
    except (
        BadImage,
        ClassifierMissing,
        WeightsUnavailable,
        CatalogError,
        EmbedderMismatch,
        StoreError,
        ValueError,
    ) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print(
            "[yellow]Interrupted.[/] What finished is stored (the stages above); run the same "
            "command again to go on from there.",
            highlight=False,
        )
        raise typer.Exit(130) from None


@contextmanager
def store_of(data_dir: Path | None, url: str | None, api_key: str | None, **placement):
    """The store a command works on, inside the error handler; `placement`: ShardsOpt,
    ReplicasOpt, WriteConsistencyOpt of the collections it creates on a cluster."""
    from searchctl.config import connect

    with user_errors(), connect(data_dir, url, api_key, **placement) as store:
        yield store


def data_dir_or_default(data_dir: Path | None) -> Path:
    from searchctl.config import default_data_dir

    return data_dir or default_data_dir()


class BarProgress:
    """The library's Progress as rich bars on stderr (off when stderr is not a terminal);
    notes go to stderr, each stage's summary to stdout as the stage ends (not with --json)."""

    def __init__(self, summaries: bool = True):
        self.summaries = summaries
        self.bars = Bars(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
            disable=not err.is_terminal,
        )
        self.task = None

    def __enter__(self) -> BarProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.stop()

    def phase(self, label: str, total: int | None = None) -> None:
        self.task = self.bars.add_task(label, total=total, rate="")

    def advance(self, n: int = 1) -> None:
        if self.task is None:
            self.phase("work")
        self.bars.advance(self.task, n)
        speed = self.bars.tasks[-1].speed
        self.bars.update(self.task, rate=f"{speed:.0f}/s" if speed else "")

    def note(self, text: str) -> None:
        err.print(text, highlight=False, soft_wrap=True)

    def done(self, report: StageReport) -> None:
        if not self.summaries:
            return
        out.print(report.summary, highlight=False, soft_wrap=True)
        for pid, reason in report.bad_images:
            err.print(f"  {report.stage}: id {pid}: {reason}", highlight=False)


def print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))
