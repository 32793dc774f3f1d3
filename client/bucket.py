"""Empty the intake bucket completely, so CloudFormation can delete it.

`aws s3 rm --recursive` removes only current objects; a bucket that has ever had versioning on keeps
older versions and delete markers, and CloudFormation's delete then fails with BucketNotEmpty.
"""

from __future__ import annotations

from typing import Callable

BATCH = 1000  # DeleteObjects takes at most 1000 keys


def empty_bucket(s3, bucket: str, progress: Callable[[int], None] = lambda n: None) -> int:
    """Delete every object version and delete marker in ``bucket``; returns how many were deleted."""
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        entries = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                   for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        for start in range(0, len(entries), BATCH):
            batch = entries[start:start + BATCH]
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise RuntimeError(f"could not delete {len(answer['Errors'])} objects from {bucket}, "
                                   f"e.g. {first['Key']}: {first.get('Code')} {first.get('Message')}")
            deleted += len(batch)
            progress(deleted)
    return deleted
