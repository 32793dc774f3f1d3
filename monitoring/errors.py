"""Errors the drift report raises for bad input (the CLI maps them to exit code 2)."""


class MonitoringInputError(ValueError):
    """An input (capture location, baseline, results table, option) is missing or unusable."""
