"""Shared bits of the theory experiment scripts: output folder and the results-file writer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for the PNG and results files"
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    return p


def write_results(out: Path, name: str, markdown: str, data: dict) -> None:
    """``name.md`` (short human summary) and ``name.json`` (the numbers) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(markdown.rstrip() + "\n")
    (out / f"{name}.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    print(markdown)
