"""ruff (the rule set in pyproject.toml) finds nothing: `make lint` runs it, and CI through this test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"ruff findings (make lint shows them too):\n{result.stdout}{result.stderr}"
