"""Benchmarks: commands that print figures and write JSON (see DESIGN.md)."""

import json
from pathlib import Path

from .._atomic import atomic_write_bytes


def write_json(result, path):
    """Write a benchmark's results as indented JSON, atomically (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(result, indent=2, default=float).encode())
