"""What a person watching the terminal sees: progress bars, event lines, the end-of-run screen.

Two styles, one API:

- ``plain``: one line per event, nothing redrawn; the default when stdout is
  not a terminal (CI, ``nohup``, a log file) and under ``--log=plain``.
- ``rich``: progress bars redrawn in place (the ``rich`` package), used where
  a terminal is attached or under ``--log=rich``.

Every module that reports progress (the training loop, the sweep driver, the
corpus packer, bucket compilation) goes through :func:`console` and its
:meth:`Console.progress`, so one run has one style. Text helpers for tables,
byte sizes and durations live here too, so the dry-run, ``presets`` and the
end-of-run summary line up the same way.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

STYLES = ("auto", "plain", "rich")
LOG_ENV = "BSJAX_LOG"  # how the CLI's --log reaches code that has no flags


# ----------------------------------------------------------------- text helpers
def human_bytes(n: float) -> str:
    """``1.50 GiB`` style (binary units)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"  # unreachable


def human_count(n: float) -> str:
    """``151.3M`` style (decimal units), exact below a thousand."""
    n = float(n)
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{suffix}"
    return f"{n:.4g}"


def duration(seconds: float) -> str:
    """``4m05s`` (``1h02m03s`` past an hour, ``12s`` under a minute)."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    seconds = max(0, int(round(seconds)))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], indent: str = "  ") -> list[str]:
    """Rows as aligned text lines under a header (numbers right-aligned, text left)."""
    rows = [[str(c) for c in row] for row in rows]
    cells = [list(header)] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [
        all(_looks_numeric(r[i]) for r in rows) if rows else False for i in range(len(header))
    ]

    def line(row):
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return (indent + "  ".join(parts)).rstrip()

    return (
        [line(header), indent + "  ".join("-" * w for w in widths)]
        + [line(r) for r in rows]
        + ([] if rows else [indent + "(none)"])
    )


def _looks_numeric(text: str) -> bool:
    text = text.strip().rstrip("%").replace(",", "").replace("e-", "").replace("e+", "")
    text = text.rstrip("KMBTs")
    try:
        float(text)
    except ValueError:
        return text in ("", "-")
    return True


# -------------------------------------------------------------------- console
def resolve_style(style: str | None = None, stream: TextIO | None = None) -> str:
    """``plain`` or ``rich``: ``auto`` (or unset) picks rich only where ``stream`` is a terminal."""
    style = style or os.environ.get(LOG_ENV, "auto") or "auto"
    if style not in STYLES:
        raise ValueError(f"--log={style!r}: choose one of {', '.join(STYLES)}")
    if style != "auto":
        return style
    stream = stream or sys.stdout
    return "rich" if getattr(stream, "isatty", lambda: False)() else "plain"


class Progress:
    """One long phase with a known total: ``update(done)``, then ``close()``.

    ``unit`` names what is counted (steps, points, documents); ``extra`` on
    update adds a short status (loss, tokens/s). The plain style prints a line
    at most every ``plain_every_s`` seconds and at the end; the rich style
    redraws a bar.
    """

    def __init__(self, owner: Console, label: str, total: int | None, unit: str):
        self.owner, self.label, self.total, self.unit = owner, label, total, unit
        self.done = 0
        self.extra = ""
        self.start = time.perf_counter()
        self._last_print = -1e9
        self._task = None
        self._closed = False
        if owner.style == "rich":
            self._task = owner._rich_progress().add_task(label, total=total)

    def eta_s(self) -> float:
        """Seconds left at the mean rate so far (NaN before the first unit or without a total)."""
        elapsed = time.perf_counter() - self.start
        if not self.total or self.done <= 0:
            return float("nan")
        return elapsed / self.done * max(self.total - self.done, 0)

    def update(self, done: int, extra: str = "") -> None:
        """Set the count of units done (not an increment) and the status text."""
        self.done, self.extra = int(done), extra
        if self._task is not None:
            self.owner._rich_progress().update(
                self._task, completed=self.done, description=f"{self.label} {extra}".rstrip()
            )
            return
        now = time.perf_counter()
        if now - self._last_print >= self.owner.plain_every_s:
            self._last_print = now
            self.owner.line(self._plain_text())

    def _plain_text(self) -> str:
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = self.eta_s()
        eta_text = f", ETA {duration(eta)}" if eta == eta else ""
        elapsed = duration(time.perf_counter() - self.start)
        extra = f"  {self.extra}" if self.extra else ""
        return f"{self.label}: {self.done}{of} {self.unit}{pct}{extra}  [{elapsed}{eta_text}]"

    def close(self) -> None:
        """Finish the bar (or print the last plain line)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self.owner._rich_progress().remove_task(self._task)
            self.owner.line(self._plain_text())
            self.owner._maybe_stop_rich()
        else:
            self.owner.line(self._plain_text())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Console:
    """Lines and progress bars on one stream, in the ``plain`` or ``rich`` style."""

    def __init__(
        self, style: str | None = None, stream: TextIO | None = None, plain_every_s: float = 5.0
    ):
        self.stream = stream or sys.stdout
        self.style = resolve_style(style, self.stream)
        self.plain_every_s = plain_every_s
        self._lock = threading.Lock()
        self._rich = None
        self._open_bars = 0

    def _rich_progress(self):
        if self._rich is None:
            from rich.console import Console as RichConsole
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=RichConsole(file=self.stream),
                transient=True,
            )
            self._rich.start()
        return self._rich

    def _maybe_stop_rich(self) -> None:
        if self._rich is not None and not self._rich.tasks:
            self._rich.stop()
            self._rich = None

    def line(self, text: str) -> None:
        """One line above any bars."""
        with self._lock:
            if self._rich is not None:
                self._rich.console.print(text, markup=False, highlight=False)
            else:
                print(text, file=self.stream, flush=True)

    def lines(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.line(text)

    def progress(self, label: str, total: int | None, unit: str = "") -> Progress:
        """A progress bar for one phase (use as a context manager or call ``close``)."""
        return Progress(self, label, total, unit)


_CONSOLE: Console | None = None


def console() -> Console:
    """The process's console (created on first use in the style ``BSJAX_LOG`` names)."""
    global _CONSOLE
    if _CONSOLE is None:
        _CONSOLE = Console()
    return _CONSOLE


def set_style(style: str) -> Console:
    """Make the process's console use ``style`` (``auto``, ``plain`` or ``rich``)."""
    global _CONSOLE
    os.environ[LOG_ENV] = style
    _CONSOLE = Console(style)
    return _CONSOLE
