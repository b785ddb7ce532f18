"""Paths and small builders the tests share (fixtures live in tests/conftest.py)."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METADATA = REPO / "data_prep" / "metadata"
FIXTURES = REPO / "tests" / "data"
SHARED = REPO.parent / "shared"  # optional extras only; every test must pass without it
