"""Helpers shared by the twin's integration tests."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from local.twin import ROOT, Twin

SAMPLES = ROOT / "local" / "sample_images"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(twin: Twin, keys: set[str], timeout: float = 90) -> dict[str, dict]:
    """The results-table items of ``keys`` once all are recorded (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict] = {}
    while time.monotonic() < deadline:
        found = {i["key"]: i for i in twin.results() if i["key"] in keys}
        if len(found) == len(keys):
            return found
        time.sleep(0.2)
    missing = sorted(keys - set(found))
    raise AssertionError(f"no outcome recorded within {timeout}s for {len(missing)} keys: {missing[:5]}")


def sample(label: str, index: int = 0) -> Path:
    return sorted((SAMPLES / label).glob("*.png"))[index]
