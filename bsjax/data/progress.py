"""Progress of a long data job: a tqdm bar on a terminal, plain lines otherwise.

Lines go to stderr, at most one per `interval_s` plus a final one, each with
items done (shards, or documents when packing), tokens, the token rate and an
ETA from the work still to do (source bytes for shards, tokens up to a token
cap when packing).
"""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """Report items (shards, documents) as they finish.

    Args:
      label: what is being built, e.g. "tokenizing train".
      total_shards: items this job builds (0: not known in advance).
      total_bytes: the total of the ETA's measure (source bytes of the shards, or a
        token cap); 0: not known, no ETA.
      interval_s: least time between two plain lines.
      item, unit: names of the items and of the ETA's measure ("B" or "tokens").
    """

    def __init__(
        self,
        label: str,
        total_shards: int,
        total_bytes: int,
        interval_s: float = 10.0,
        *,
        item: str = "shards",
        unit: str = "B",
    ):
        self.label, self.total_shards, self.total_bytes = label, total_shards, total_bytes
        self.interval_s, self.item = interval_s, item
        self.shards = self.tokens = self.bytes = 0
        self._start = self._last_line = time.perf_counter()
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_bytes or None, unit=unit, unit_scale=True, desc=label, file=sys.stderr
            )

    def _line(self) -> str:
        elapsed = max(1e-9, time.perf_counter() - self._start)
        rate = self.tokens / elapsed
        done = f"{self.shards}/{self.total_shards}" if self.total_shards else f"{self.shards:,}"
        line = (
            f"{self.label}: {done} {self.item}, {self.tokens:,} tokens, "
            f"{rate / 1e6:.2f}M tokens/s, {_duration(elapsed)} elapsed"
        )
        if 0 < self.bytes < self.total_bytes:
            left = elapsed * (self.total_bytes - self.bytes) / self.bytes
            line += f", ETA {_duration(left)}"
        return line

    def update(self, num_tokens: int, source_bytes: int, items: int = 1) -> None:
        """``items`` more finished, with their tokens and their share of the ETA's measure."""
        self.shards += items
        self.tokens += num_tokens
        self.bytes += source_bytes
        if self._bar is not None:
            self._bar.update(source_bytes)
            elapsed = max(1e-9, time.perf_counter() - self._start)
            self._bar.set_postfix_str(f"{self.tokens / elapsed / 1e6:.2f}M tokens/s")
        elif time.perf_counter() - self._last_line >= self.interval_s:
            self._last_line = time.perf_counter()
            print(self._line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        """The final line (always printed)."""
        if self._bar is not None:
            self._bar.close()
        print(self._line(), file=sys.stderr, flush=True)
