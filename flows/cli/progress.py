"""The terminal side of `pipeline.progress`: one rich progress bar per running step.

Shown only when stderr is a terminal (logs and pipes stay clean); counters the library
attaches (`rejected`, `cached`, `failed`, ...) are shown beside the bar, with the rate.
Updates are throttled, so a loop of many small rows (ingest) costs little.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from pipeline import progress

_MIN_INTERVAL_S = 0.1


class RichProgress:
    """A `pipeline.progress.ProgressListener` drawing rich bars on stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}s {task.fields[counters]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._ids: dict[int, TaskID] = {}
        self._started: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._latest: dict[int, tuple[int, dict[str, int]]] = {}
        self._lock = threading.Lock()

    def started(self, step_id: int, name: str, total: int | None, unit: str) -> None:
        with self._lock:
            self._ids[step_id] = self.bars.add_task(
                name, total=total, unit=unit, counters="", rate=""
            )
            self._started[step_id] = self._last[step_id] = time.monotonic()

    def advanced(self, step_id: int, done: int, counters: dict[str, int]) -> None:
        now = time.monotonic()
        with self._lock:
            if step_id not in self._ids:
                return
            self._latest[step_id] = (done, counters)
            if now - self._last[step_id] < _MIN_INTERVAL_S:
                return
            self._last[step_id] = now
            self._update(step_id, done, counters, now)

    def finished(self, step_id: int) -> None:
        with self._lock:
            if step_id not in self._ids:
                return
            done, counters = self._latest.pop(step_id, (0, {}))
            self._update(step_id, done, counters, time.monotonic())
            task_id = self._ids.pop(step_id)
            task = next(t for t in self.bars.tasks if t.id == task_id)
            if task.total is None:
                self.bars.update(task_id, total=done)
            self._started.pop(step_id, None)
            self._last.pop(step_id, None)

    def _update(self, step_id: int, done: int, counters: dict[str, int], now: float) -> None:
        elapsed = max(now - self._started[step_id], 1e-9)
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counters.items()) if v)
        self.bars.update(
            self._ids[step_id],
            completed=done,
            counters=f"({shown})" if shown else "",
            rate=f"{done / elapsed:,.1f}/s",
        )


@contextlib.contextmanager
def terminal_progress() -> Iterator[None]:
    """Show library progress as bars while the body runs, if stderr is a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    listener = RichProgress()
    with listener.bars, progress.listening(listener):
        yield
