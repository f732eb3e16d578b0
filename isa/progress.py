"""A terminal progress bar driven by ``(stage, done, total)`` callbacks — the signature of
every progress hook here (``SelectionRun``, the service's job ``stage``/``progress``) — one
line per stage. The CLI, the remote CLI and the HTTP client share it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

StageProgress = Callable[[str, int, int], None]


class StageBar:
    """A rich progress bar with a line per stage; a context manager.

    Args:
        show: draw the bar (off: the bar is only a callback that forwards).
        console: where to draw (rich's default console, i.e. stdout, when None).
        forward: also called with every update (e.g. a caller's own callback).
    """

    def __init__(self, show: bool = True, *, console: Any = None,
                 forward: StageProgress | None = None) -> None:
        self.forward = forward
        self.bar: Any = None
        if show:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
            self.bar = Progress(TextColumn("{task.description:<12}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), console=console)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> StageBar:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.forward is not None:
            self.forward(stage, done, total)
        if self.bar is None:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total or None)
        self.bar.update(self.tasks[stage], completed=done, total=total or None)
