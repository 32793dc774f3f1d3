"""Reviewers' decisions as ground truth: the SageMaker Ground Truth augmented-manifest form, in S3.

Each decision adds, in the ground-truth bucket:
- images/<sha256 of the bytes><extension>: a copy of the labelled image, so the label outlives the intake
  photo (drivers re-upload under the same key) and names exactly the bytes the person saw;
- manifest/<yyyy>/<mm>/<dd>/<id>.jsonl: one JSON line, as a Ground Truth image-classification job writes it:
  {"source-ref": "s3://...", "vehicle-class": 0, "vehicle-class-metadata": {"class-name": "bicycle", ...}}.
S3 objects cannot be appended to, so the manifest is every object under manifest/, read in key order
(`python -m training stage-data --from-manifest s3://<bucket>/manifest/` stages it). The object names come from the
execution ARN and the image's hash, so running a decision's effects twice writes the same two objects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from botocore.exceptions import ClientError

from waiting import WaitingImage

LABEL_ATTRIBUTE = "vehicle-class"
METADATA_ATTRIBUTE = f"{LABEL_ATTRIBUTE}-metadata"
JOB_NAME = "labeling-job/scones-review"
MANIFEST_PREFIX = "manifest/"
IMAGES_PREFIX = "images/"


@dataclass(frozen=True)
class Label:
    """A person's label for a waiting image."""
    image: WaitingImage
    name: str  # one of the image's classes, or "unusable"
    reviewer: str
    decided_at: str  # ISO-8601, UTC


def manifest_line(label: Label, source_ref: str) -> dict[str, Any]:
    image = label.image
    classes = image.classes + ["unusable"]
    return {
        "source-ref": source_ref,
        LABEL_ATTRIBUTE: classes.index(label.name),
        METADATA_ATTRIBUTE: {
            "class-name": label.name, "confidence": 1.0, "type": "groundtruth/image-classification",
            "job-name": JOB_NAME, "human-annotated": "yes", "creation-date": label.decided_at.rstrip("Z"),
            "class-map": {str(n): name for n, name in enumerate(classes)},
            "reviewer": label.reviewer, "review-reason": image.reason,
            "model-label": image.label, "model-confidence": image.confidence,
            "original-source-ref": f"s3://{image.bucket}/{image.key}", "execution-arn": image.execution_arn,
        },
    }


class GroundTruth:
    def __init__(self, s3, bucket: str):
        self._s3, self.bucket = s3, bucket

    def add(self, label: Label) -> str | None:
        """The manifest object's key, or None when the image was deleted before the decision (no line:
        a label without its image trains nothing)."""
        image = label.image
        try:
            body = self._s3.get_object(Bucket=image.bucket, Key=image.key)["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        suffix = PurePosixPath(image.key).suffix.lower()[:8]
        copy = f"{IMAGES_PREFIX}{hashlib.sha256(body).hexdigest()}{suffix}"
        self._s3.put_object(Bucket=self.bucket, Key=copy, Body=body)
        line = manifest_line(label, f"s3://{self.bucket}/{copy}")
        day = label.decided_at[:10].replace("-", "/")
        name = hashlib.sha256(image.execution_arn.encode()).hexdigest()[:32]
        key = f"{MANIFEST_PREFIX}{day}/{name}.jsonl"
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=(json.dumps(line) + "\n").encode(),
                            ContentType="application/jsonlines")
        return key
