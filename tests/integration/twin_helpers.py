"""Helpers shared by the twin's integration tests."""

from __future__ import annotations

from pathlib import Path

from local.twin import ROOT, Twin

SAMPLES = ROOT / "local" / "sample_images"


def wait_for(twin: Twin, keys: set[str], timeout: float = 90) -> dict[str, dict]:
    """The results-table items of ``keys`` once all are recorded (fails the test on timeout)."""
    found = twin.wait_for_results(keys, timeout)
    missing = sorted(keys - set(found))
    if missing:
        raise AssertionError(f"no outcome recorded within {timeout}s for {len(missing)} keys: {missing[:5]}")
    return found


def sample(label: str, index: int = 0) -> Path:
    return sorted((SAMPLES / label).glob("*.png"))[index]
