"""Where a benchmark's figures come from: the commit they were measured on (stdlib only, so a
parent process that times child processes imports nothing heavy)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMIT_ENV = "BSJAX_BENCH_GIT_COMMIT"


def git_commit() -> str | None:
    """HEAD of the checkout (or $BSJAX_BENCH_GIT_COMMIT, for a copy exported from one)."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None
