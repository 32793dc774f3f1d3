"""Fixtures for the Lambda handler tests.

Each functions/<name>/app.py is imported under a unique module name (all three files
are called app.py) with its environment set first, because the handlers validate
their configuration at import time, as they do at a Lambda cold start.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from photo_requests import BUCKET, IDEMPOTENCY, PHOTOS, RESULTS

REPO_ROOT = Path(__file__).resolve().parents[3]
FUNCTIONS_DIR = REPO_ROOT / "functions"
EVENTS_DIR = REPO_ROOT / "events"

_BASE_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_SERVICE_NAME": "scones-test",
    "POWERTOOLS_METRICS_NAMESPACE": "SconesTest",
}
# Anything from the caller's shell that would change what the handlers do.
_CLEARED_ENV = (
    "POWERTOOLS_DEV",
    "POWERTOOLS_METRICS_DISABLED",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
    "ENDPOINT_NAME",
    "CLASS_NAMES",
    "THRESHOLD",
    "AUDIT_RATE",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_OUTPUT_SIDE",
    "INTAKE_BUCKET",
    "PHOTOS_TABLE",
    "IDEMPOTENCY_TABLE",
    "RESULTS_TABLE",
    "UPLOAD_URL_EXPIRY_SECONDS",
)


@dataclass
class FakeLambdaContext:
    function_name: str = "scones-test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:scones-test-function"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def load_function(monkeypatch):
    """load_function("serialize", MAX_OUTPUT_SIDE="64") -> the freshly imported app module
    (``module="submit"`` for a function whose handler lives in another module of its folder)."""
    counter = iter(range(1_000))

    def load(name: str, module: str = "app", **env: str):
        for var in _CLEARED_ENV:
            monkeypatch.delenv(var, raising=False)
        for var, value in {**_BASE_ENV, **env}.items():
            monkeypatch.setenv(var, str(value))
        directory = FUNCTIONS_DIR / name
        # Modules beside app.py are imported the way Lambda does: from the code directory.
        monkeypatch.syspath_prepend(str(directory))
        module_name = f"_lambda_{name}_{module}_{next(counter)}"
        spec = importlib.util.spec_from_file_location(module_name, directory / f"{module}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, module_name, module)  # pydantic resolves annotations here
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def load_event():
    def load(file_name: str) -> dict:
        return json.loads((EVENTS_DIR / file_name).read_text(encoding="utf-8"))

    return load


def _emf_metrics(stdout: str) -> list[dict]:
    """Flatten the EMF blobs Powertools printed into one entry per metric value."""
    found = []
    for line in stdout.splitlines():
        try:
            blob = json.loads(line)
        except ValueError:
            continue
        if not isinstance(blob, dict) or "_aws" not in blob:
            continue
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            dimension_names = [name for dimension_set in directive["Dimensions"] for name in dimension_set]
            for definition in directive["Metrics"]:
                values = blob[definition["Name"]]
                for value in values if isinstance(values, list) else [values]:
                    found.append(
                        {
                            "namespace": directive["Namespace"],
                            "name": definition["Name"],
                            "unit": definition["Unit"],
                            "value": value,
                            "dimensions": {name: blob[name] for name in dimension_names},
                        }
                    )
    return found


@pytest.fixture
def emitted_metrics(capsys):
    """Call to read (and consume) the metrics printed to stdout so far."""

    def read() -> list[dict]:
        return _emf_metrics(capsys.readouterr().out)

    return read


# ------------------------------------------------------------------ the front door's handlers (functions/photos)
@pytest.fixture
def aws():
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        for table in (PHOTOS, IDEMPOTENCY):
            dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                  KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                                  AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
        dynamodb.create_table(TableName=RESULTS, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "bucket", "KeyType": "HASH"},
                                         {"AttributeName": "key", "KeyType": "RANGE"}],
                              AttributeDefinitions=[{"AttributeName": "bucket", "AttributeType": "S"},
                                                    {"AttributeName": "key", "AttributeType": "S"}])
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield dynamodb


@pytest.fixture
def submit(aws, load_function):
    return load_function("photos", module="submit", INTAKE_BUCKET=BUCKET, PHOTOS_TABLE=PHOTOS,
                         IDEMPOTENCY_TABLE=IDEMPOTENCY, MAX_IMAGE_BYTES="1000", UPLOAD_URL_EXPIRY_SECONDS="300")


@pytest.fixture
def status(aws, load_function):
    return load_function("photos", module="status", INTAKE_BUCKET=BUCKET, PHOTOS_TABLE=PHOTOS, RESULTS_TABLE=RESULTS)
