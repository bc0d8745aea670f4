"""The evaluation text shipped with dsdeploy (public domain; see README.md beside it)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent
EVALUATION_TEXT = "hamlet-act1-scenes1-2.txt"


def evaluation_text() -> Path:
    """Shakespeare's Hamlet, Act I scenes 1–2: ~20 kB, about 5,000 tokens for most vocabularies."""
    return DATA / EVALUATION_TEXT
