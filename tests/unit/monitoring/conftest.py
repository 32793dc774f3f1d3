"""Builders for the drift-report tests: baselines and SageMaker data-capture files.

Capture lines follow SageMaker's JSONL schema (captureData.endpointInput/endpointOutput,
eventMetadata.eventId/inferenceTime, eventVersion) and its folder layout
{prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

# Tests import these builders as `drift_report_helpers`: `from conftest import ...` breaks when
# pytest loads another folder's conftest.py first (every one of them is a module named "conftest").
sys.modules["drift_report_helpers"] = sys.modules[__name__]

CLASSES = ["bicycle", "motorcycle"]
START = datetime(2026, 11, 21, 6, 0, 0, tzinfo=timezone.utc)
# One PNG header is enough for the input side: the report never decodes the image.
PNG_STUB = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


def healthy_probabilities(n: int, seed: int) -> list[list[float]]:
    """A confident two-class model on a balanced set: the top probability is mostly > 0.95."""
    rng = np.random.default_rng(seed)
    confidence = np.clip(1.0 - rng.beta(1.0, 40.0, size=n), 0.5, 1.0)
    winner = rng.integers(0, 2, size=n)
    return [[c, 1 - c] if w == 0 else [1 - c, c] for c, w in zip(confidence.tolist(), winner.tolist())]


def shifted_probabilities(n: int, seed: int) -> list[list[float]]:
    """Everything called 'motorcycle' with low confidence: what a broken camera feed looks like."""
    rng = np.random.default_rng(seed)
    return [[1 - c, c] for c in rng.uniform(0.55, 0.75, size=n).tolist()]


def baseline_doc(probabilities: list[list[float]], threshold: float | None = 0.93) -> dict:
    doc = {
        "classes": CLASSES,
        "split": "validation",
        "n": len(probabilities),
        "labels": [int(np.argmax(p)) for p in probabilities],
        "probabilities": probabilities,
    }
    if threshold is not None:
        doc["threshold_default"] = threshold
    return doc


def capture_line(probabilities, when: datetime, encoding: str = "JSON") -> str:
    body = json.dumps(probabilities)
    if encoding == "BASE64":
        body = base64.b64encode(body.encode()).decode()
    record = {
        "captureData": {
            "endpointInput": {"observedContentType": "image/png", "mode": "INPUT", "data": PNG_STUB,
                              "encoding": "BASE64"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "data": body,
                               "encoding": encoding},
        },
        "eventMetadata": {"eventId": str(uuid.uuid4()), "inferenceTime": when.isoformat().replace("+00:00", "Z")},
        "eventVersion": "0",
    }
    return json.dumps(record)


def capture_key(when: datetime, name: str, endpoint: str = "vehicle-classifier", variant: str = "AllTraffic") -> str:
    return f"{endpoint}/{variant}/{when:%Y/%m/%d/%H}/{name}.jsonl"


def capture_files(probabilities, per_file: int = 10, spacing_s: int = 45, encoding: str = "JSON") -> dict[str, str]:
    """{relative key: file text}: records spaced ``spacing_s`` apart, ``per_file`` lines per file,
    so files fall into several hour folders."""
    files: dict[str, list[str]] = {}
    for i, p in enumerate(probabilities):
        when = START + timedelta(seconds=i * spacing_s)
        file_start = START + timedelta(seconds=(i // per_file) * per_file * spacing_s)
        key = capture_key(file_start, f"part-{i // per_file:04d}")
        files.setdefault(key, []).append(capture_line(p, when, encoding))
    return {key: "\n".join(lines) + "\n" for key, lines in files.items()}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for key, text in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def baseline_path(tmp_path) -> Path:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline_doc(healthy_probabilities(400, seed=1))), encoding="utf-8")
    return path


