"""The endpoint goes away mid-run: the state machine retries, records `failed`, and recovers after a restart."""

from __future__ import annotations

import json

from twin_helpers import sample, wait_for


def put(twin, key: str, body: bytes) -> None:
    twin.client("s3").put_object(Bucket=twin.outputs["IntakeBucketName"], Key=key, Body=body)


def test_stopped_endpoint_gives_failed_records_after_retries_then_recovers(twin):
    put(twin, "before/bike.png", sample("bicycle").read_bytes())
    assert wait_for(twin, {"before/bike.png"})["before/bike.png"]["outcome"] in ("classified", "needs_review")

    twin.endpoint.stop()
    down = {"outage/bike.png", "outage/moto.png"}
    put(twin, "outage/bike.png", sample("bicycle").read_bytes())
    put(twin, "outage/moto.png", sample("motorcycle").read_bytes())
    records = wait_for(twin, down, timeout=120)
    sfn = twin.client("stepfunctions")
    for key in down:
        record = records[key]
        assert record["outcome"] == "failed"
        assert record["reason"] == "EndpointUnavailableError"
        assert "errorMessage" in json.loads(record["error_detail"])
        history = sfn.get_execution_history(executionArn=record["execution_arn"], maxResults=1000)["events"]
        attempts = [e for e in history if e["type"] == "TaskFailed"
                    and e["taskFailedEventDetails"]["error"] == "EndpointUnavailableError"]
        assert len(attempts) == 6  # the first try and the ASL's five retries
        assert sfn.describe_execution(executionArn=record["execution_arn"])["status"] == "FAILED"

    twin.restart_endpoint()
    put(twin, "after/moto.png", sample("motorcycle").read_bytes())
    record = wait_for(twin, {"after/moto.png"})["after/moto.png"]
    assert record["outcome"] in ("classified", "needs_review")
    assert record["label"] == "motorcycle"
