"""How long work talks to whoever runs it: a `Progress` goes in, a `StageReport` comes out.

Every long job of the library (a stage of the ingest, a training, an evaluation) takes one
`progress` argument and reports through it; the CLI renders it as bars, a server would log
it, tests pass nothing (NO_PROGRESS). Every ingest stage returns a StageReport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


class Progress(Protocol):
    """What a long job says while it runs."""

    def phase(self, label: str, total: int | None = None) -> None:
        """A new phase of work begins, of `total` items if known (a new bar)."""

    def advance(self, n: int = 1) -> None:
        """`n` more items of the current phase are done."""

    def note(self, text: str) -> None:
        """A line worth keeping: an epoch's losses, a photo that could not be read."""

    def done(self, report: StageReport) -> None:
        """A stage has ended: its report, shown at once so an interrupted run still says
        what it finished."""


class _NoProgress:
    def phase(self, label: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def done(self, report: StageReport) -> None:
        pass


NO_PROGRESS: Progress = _NoProgress()


class TooLittleData(ValueError):
    """The catalog is too small for a model: an ingest stage skips with the reason, a command
    that asked for the model stops with it."""


class Action(str, Enum):
    """What a stage did."""

    TRAINED = "trained"  # a model was trained, then what it makes was stored
    EMBEDDED = "embedded"  # vectors were made for the points that lacked them
    DESCRIBED = "described"  # colour vectors were made (no model)
    TAGGED = "tagged"  # tags were predicted for the points that lacked them
    UP_TO_DATE = "up_to_date"  # nothing was missing
    SKIPPED = "skipped"  # the stage cannot run here; `reason` says why


@dataclass
class StageReport:
    """What one stage did: its action, a line for a person, and its own figures."""

    stage: str
    action: Action
    summary: str
    details: dict = field(default_factory=dict)
    bad_images: list[tuple[int, str]] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        return self.details.get("reason")

    def to_json(self) -> dict:
        data = {"action": self.action.value, **self.details}
        if self.bad_images:
            data["bad_images"] = [{"id": i, "reason": r} for i, r in self.bad_images]
        return data


def skipped(stage: str, reason: str, what: str, **details) -> StageReport:
    """A stage that cannot run here: `what` is the summary's start ("No colour vectors")."""
    return StageReport(stage, Action.SKIPPED, f"{what}: {reason}", {"reason": reason, **details})
