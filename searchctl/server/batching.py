"""Micro-batching: photos that arrive together are embedded in one model call.

Each request's thread hands its rows to `MicroBatcher.__call__` and waits; one worker thread
takes what has arrived (up to `max_batch` rows, waiting at most `window` seconds after the
first), runs the model once on all of it, and hands each caller its own rows back. With the
default window of 0 a lone request waits for nothing; under load, the requests that arrive
while the model runs go together in its next call.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np


class MicroBatcher:
    """A thread-safe stand-in for `fn(batch) -> rows` that batches concurrent calls."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], max_batch: int = 16,
                 window: float = 0.0, expected: Callable[[], int] | None = None):  # fmt: skip
        """`expected()`: how many callers are on their way (e.g. searches in flight); while
        fewer have arrived, the worker waits for them up to `window` seconds."""
        self.fn, self.max_batch, self.window = fn, max_batch, window
        self.expected = expected or (lambda: 1)
        self.pending: queue.Queue = queue.Queue()
        self.batches: list[int] = []  # rows of each model call (for the metrics and tests)
        self.thread = threading.Thread(target=self._run, name="searchctl-batcher", daemon=True)
        self.thread.start()

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        future: Future = Future()
        self.pending.put((rows, future))
        return future.result()

    def _take(self) -> list[tuple[np.ndarray, Future]]:
        items = [self.pending.get()]
        count = len(items[0][0])
        deadline = time.perf_counter() + self.window
        while count < self.max_batch and (count < self.expected() or not self.pending.empty()):
            try:
                item = self.pending.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            items.append(item)
            count += len(item[0])
        return items

    def _run(self) -> None:
        while True:
            items = self._take()
            try:
                out = self.fn(np.concatenate([rows for rows, _ in items]))
            except BaseException as exc:  # noqa: BLE001 - each caller gets the error
                for _, future in items:
                    future.set_exception(exc)
                continue
            self.batches.append(sum(len(rows) for rows, _ in items))
            start = 0
            for rows, future in items:
                future.set_result(out[start : start + len(rows)])
                start += len(rows)
