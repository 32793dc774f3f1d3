"""The endpoint goes away mid-run: the state machine retries, records `failed`, the endpoint comes back (by
itself after a timed outage) and a re-drive recovers every image."""

from __future__ import annotations

import json
import time

import pytest
import requests

from twin_helpers import put, sample, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


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
        assert len(attempts) == 5  # the first try and the ASL's four retries
        assert sfn.describe_execution(executionArn=record["execution_arn"])["status"] == "FAILED"

    twin.restart_endpoint()
    put(twin, "after/moto.png", sample("motorcycle").read_bytes())
    record = wait_for(twin, {"after/moto.png"})["after/moto.png"]
    assert record["outcome"] in ("classified", "needs_review")
    assert record["label"] == "motorcycle"


def test_an_outage_longer_than_the_retries_costs_time_not_images(twin, capsys):
    from client.__main__ import main

    outage_s = 40  # longer than the retries' backoff (at most 15 s) plus five quick refusals
    started = time.monotonic()
    twin.take_endpoint_down(outage_s)
    keys = {f"long-outage/{i}.png" for i in range(4)}
    for i, key in enumerate(sorted(keys)):
        put(twin, key, sample("bicycle" if i % 2 else "motorcycle", i).read_bytes())
    failed = wait_for(twin, keys, timeout=outage_s)
    assert time.monotonic() - started < outage_s  # they failed while it was down
    assert {r["outcome"] for r in failed.values()} == {"failed"}
    assert {r["reason"] for r in failed.values()} == {"EndpointUnavailableError"}

    # The endpoint comes back by itself; nobody restarts it.
    def ping() -> bool:
        return requests.get(f"{twin.endpoint.url}/ping", timeout=2).status_code == 200

    deadline = started + outage_s + 30
    while time.monotonic() < deadline:
        try:
            if ping():
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    assert ping() and time.monotonic() - started >= outage_s
    port = str(twin.settings.port)
    # Every upload the outages of this module failed: these four and any an earlier test left.
    stranded = {r["key"]: r for r in twin.results() if r["outcome"] == "failed"
                and r["reason"] == "EndpointUnavailableError"}
    assert keys <= set(stranded)
    n = len(stranded)
    assert main(["redrive", "--port", port, "--dry-run"]) == 0
    assert f"would start {n} executions: {n} failed records" in capsys.readouterr().out
    assert main(["redrive", "--port", port]) == 0
    assert f"started {n} executions: {n} failed records, 0 undelivered uploads, 0 unwritten outcomes" \
        in capsys.readouterr().out

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        records = twin.wait_for_results(set(stranded), 5)
        if all(r["outcome"] != "failed" for r in records.values()):
            break
        time.sleep(0.5)
    assert {r["outcome"] for r in records.values()} <= {"classified", "needs_review"}
    for key, record in records.items():
        assert record["execution_arn"] != stranded[key]["execution_arn"]  # a new execution wrote it
        assert record["upload"] == stranded[key]["upload"]  # ... for the same upload, which it could replace
    # Nothing transient is left to re-drive.
    assert main(["redrive", "--port", port, "--dry-run"]) == 0
    assert "would start 0 executions" in capsys.readouterr().out
