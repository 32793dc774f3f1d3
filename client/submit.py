"""Upload photos to the intake bucket and wait for each one's recorded outcome."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from contracts.results import ResultRecord, get_record
from contracts.stack import Target

# The photo formats serialize reads, by file name: what is picked from a folder (a file given by name is
# sent whatever it is, and gets a record either way).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".heic", ".heif", ".avif", ".gif")


class SubmitError(Exception):
    """Nothing to submit, or a path that cannot be read."""


@dataclass
class Submission:
    path: Path
    key: str
    sent_at: datetime
    previous_execution: str | None = None  # the execution behind the key's record before this upload
    record: ResultRecord | None = None

    @property
    def seconds(self) -> float | None:
        if not self.record or self.record.recorded_at is None:
            return None
        return max(0.0, (self.record.recorded_at - self.sent_at).total_seconds())


def photos(paths: list[Path]) -> list[tuple[Path, str]]:
    """(file, name below the prefix) for every photo given: files as they are, folders searched for images."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_file():
            found.append((path, path.name))
        elif path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise SubmitError(f"{path}: no {'/'.join(IMAGE_SUFFIXES)} files in this folder")
            found += [(p, p.relative_to(path.parent).as_posix()) for p in images]
        else:
            raise SubmitError(f"{path}: no such file or folder")
    return found


def key_for(prefix: str, name: str) -> str:
    """The object key a photo named ``name`` is uploaded under."""
    return f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name


def submit(target: Target, files: list[tuple[Path, str]], prefix: str, timeout_s: float,
           on_outcome: Callable[[Submission], None] = lambda s: None, poll_s: float = 0.5) -> list[Submission]:
    """Upload every (file, name) of ``photos()`` under ``prefix``, then wait until each has a record written
    after its upload."""
    s3, dynamodb = target.client("s3"), target.client("dynamodb")
    pending: list[Submission] = []
    for path, name in files:
        key = key_for(prefix, name)
        earlier = get_record(dynamodb, target.table, target.bucket, key)
        submission = Submission(path, key, datetime.now(timezone.utc), earlier.execution_arn if earlier else None)
        s3.upload_file(str(path), target.bucket, key)
        pending.append(submission)
    done: list[Submission] = []
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for submission in list(pending):
            record = _record_since(dynamodb, target, submission)
            if record:
                submission.record = record
                pending.remove(submission)
                done.append(submission)
                on_outcome(submission)
        if pending:
            time.sleep(poll_s)
    return done + pending


def _record_since(dynamodb, target: Target, submission: Submission) -> ResultRecord | None:
    """The key's record once a newer execution than the one before this upload has written it."""
    record = get_record(dynamodb, target.table, target.bucket, submission.key)
    if record and record.execution_arn != submission.previous_execution:
        return record
    return None
