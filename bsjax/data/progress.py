"""Progress of a long data job: a tqdm bar on a terminal, plain lines otherwise.

Lines go to stderr, at most one per `interval_s` plus a final one, each with
shards done, tokens, the token rate and an ETA from the bytes still to read.
"""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """Report shards as they finish.

    Args:
      label: what is being built, e.g. "tokenizing train".
      total_shards: shards this job builds.
      total_bytes: source bytes those shards read (the ETA's measure).
      interval_s: least time between two plain lines.
    """

    def __init__(self, label: str, total_shards: int, total_bytes: int, interval_s: float = 10.0):
        self.label, self.total_shards, self.total_bytes = label, total_shards, max(1, total_bytes)
        self.interval_s = interval_s
        self.shards = self.tokens = self.bytes = 0
        self._start = self._last_line = time.perf_counter()
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total_bytes, unit="B", unit_scale=True, desc=label, file=sys.stderr
            )

    def _line(self) -> str:
        elapsed = max(1e-9, time.perf_counter() - self._start)
        rate = self.tokens / elapsed
        line = (
            f"{self.label}: {self.shards}/{self.total_shards} shards, {self.tokens:,} tokens, "
            f"{rate / 1e6:.2f}M tokens/s, {_duration(elapsed)} elapsed"
        )
        if 0 < self.bytes < self.total_bytes:
            left = elapsed * (self.total_bytes - self.bytes) / self.bytes
            line += f", ETA {_duration(left)}"
        return line

    def update(self, num_tokens: int, source_bytes: int) -> None:
        """One more shard finished."""
        self.shards += 1
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
