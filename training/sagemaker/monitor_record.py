"""Model Monitor record preprocessor: one captured request -> the features the monitor tracks.

The endpoint's input is an image, which Model Monitor's data-quality analyser cannot profile, so
the monitored features are the model's answer: each class probability and the top confidence.
This file is uploaded as the schedule's record_preprocessor_script and runs inside the Model
Monitor container (standard library only); `training.sagemaker.monitor` builds the baseline CSV
with the same `features` function, so baseline and live data have the same columns.

The class names come from the SCONES_CLASSES environment variable (comma-separated, in model
output order), which the monitoring job definition sets.
"""

from __future__ import annotations

import json
import os

CLASSES_ENV = "SCONES_CLASSES"


def features(probabilities, classes):
    """{"confidence": max p, "prob_<class>": p, ...} for one prediction, keys in lexicographic order.

    Model Monitor hands a preprocessor's keys to its analysis job in lexicographic order and matches them to
    the baseline dataset's columns by position (AWS's docs; aws/amazon-sagemaker-examples#2850). The baseline
    CSV is written from this same dict, so its columns are in that order too and each feature meets its own
    baseline.
    """
    probabilities = [float(p) for p in probabilities]
    if len(probabilities) != len(classes):
        raise ValueError(f"{len(probabilities)} probabilities for {len(classes)} classes")
    row = {f"prob_{name}": p for name, p in zip(classes, probabilities)}
    row["confidence"] = max(probabilities)
    return dict(sorted(row.items()))


def preprocess_handler(inference_record):
    """Called by Model Monitor for each captured record; returns that record's features."""
    classes = [c for c in os.environ.get(CLASSES_ENV, "").split(",") if c]
    output = inference_record.endpoint_output
    data = output.data
    if output.encoding == "BASE64":  # JSON not listed as a capture JSON content type
        import base64

        data = base64.b64decode(data).decode("utf-8")
    return features(json.loads(data), classes)
