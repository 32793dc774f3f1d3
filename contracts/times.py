"""ISO-8601 timestamps as the stack, its functions and SageMaker write them, always read timezone-aware in UTC."""

from datetime import datetime, timezone


def parse_time(value: str) -> datetime:
    """Parse an ISO-8601 string such as SageMaker's ``2026-11-21T06:12:03.123Z``.

    Naive timestamps are taken as UTC: SageMaker and the Lambda functions write UTC,
    and comparing naive with aware datetimes would raise later.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}")
    return as_utc(datetime.fromisoformat(value.strip()))


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    """UTC ISO-8601 with a trailing Z, the form used in drift.json and the report."""
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
