"""Files vendored under tests/data (small, fixed): tests read them from here and never skip."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
# Real-world preference files in LLaMA-Factory's shapes (rows per file: tests/data/llamafactory/README.md).
LLAMAFACTORY = DATA / "llamafactory"
