"""Drift monitoring of the deployed vehicle classifier.

Reads the endpoint's data capture (and optionally the pipeline's results table), compares
the live predictions with the training-time baseline using the population stability
index, and writes ``report.html``, ``drift.json`` and PNG charts. Entry points:
``build_report(...)`` for Python callers (the local twin) and ``python -m monitoring``.
"""

from monitoring.build import DriftResult, build_report
from monitoring.errors import MonitoringInputError

__all__ = ["DriftResult", "MonitoringInputError", "build_report"]
