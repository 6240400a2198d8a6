"""Progress of long library loops, reported to whoever listens (a terminal bar, a test).

Library code does not know about terminals or Prefect. It announces a unit of work and
advances it::

    with progress.step("pitch", total=len(clips), unit="clip") as advance:
        for clip in clips:
            ...
            advance(1)

and may attach counters (`advance(1, cached=1)`, `advance(0, failed=1)`) that listeners
show beside the bar. Nothing listens by default, so the cost is one function call per
advance. The `forge` CLI installs a rich progress bar on an interactive stderr
(`flows.cli.progress`). The listener is process-wide rather than context-local because
Prefect runs tasks in worker threads; work running in other processes (Dask) reports
nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Protocol


class ProgressListener(Protocol):
    """Receives progress events; implementations must be thread-safe."""

    def started(self, step_id: int, name: str, total: int | None, unit: str) -> None: ...

    def advanced(self, step_id: int, done: int, counters: dict[str, int]) -> None: ...

    def finished(self, step_id: int) -> None: ...


Advance = Callable[..., None]

_listener: ProgressListener | None = None
_lock = threading.Lock()
_next_id = 0


def listen(listener: ProgressListener | None) -> ProgressListener | None:
    """Install `listener` (None: stop listening); returns the previous one."""
    global _listener
    with _lock:
        previous, _listener = _listener, listener
    return previous


@contextlib.contextmanager
def listening(listener: ProgressListener) -> Iterator[ProgressListener]:
    previous = listen(listener)
    try:
        yield listener
    finally:
        listen(previous)


@contextlib.contextmanager
def step(name: str, total: int | None = None, unit: str = "item") -> Iterator[Advance]:
    """One unit of work with `total` parts (None: unknown); yields `advance(n, **counters)`."""
    global _next_id
    listener = _listener
    if listener is None:
        yield ignore
        return
    with _lock:
        _next_id += 1
        step_id = _next_id
    done = 0
    counters: dict[str, int] = {}
    step_lock = threading.Lock()
    listener.started(step_id, name, total, unit)

    def advance(n: int = 1, **more: int) -> None:
        nonlocal done
        with step_lock:
            done += n
            for key, value in more.items():
                counters[key] = counters.get(key, 0) + value
            snapshot = dict(counters)
            current = done
        listener.advanced(step_id, current, snapshot)

    try:
        yield advance
    finally:
        listener.finished(step_id)


def ignore(n: int = 1, **counters: int) -> None:
    """An `advance` that reports nothing (for code outside any step)."""
    return None
