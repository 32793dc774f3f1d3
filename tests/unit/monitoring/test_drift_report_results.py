"""Reading the pipeline's results table (DynamoDB, via moto): every page, every outcome."""

import json
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from drift_report_helpers import START
from contracts.times import format_time
from monitoring.errors import MonitoringInputError
from monitoring.results import read_results, summarise_results

TABLE = "results"


@pytest.fixture
def dynamodb(aws_env):
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "bucket", "KeyType": "HASH"}, {"AttributeName": "key", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "bucket", "AttributeType": "S"},
                                  {"AttributeName": "key", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def result_item(i: int, outcome: str, *, latency_s: float = 2.0, padding: int = 0) -> dict:
    """An item as the state machine's PutItem tasks write it (low-level attribute values)."""
    uploaded = START + timedelta(minutes=i)
    item = {
        "bucket": {"S": "intake"},
        "key": {"S": f"uploads/{i:04d}.png"},
        "outcome": {"S": outcome},
        "endpoint_name": {"S": "vehicle-classifier"},
        "uploaded_at": {"S": format_time(uploaded)},
        "recorded_at": {"S": format_time(uploaded + timedelta(seconds=latency_s))},
    }
    if outcome == "failed":
        item["reason"] = {"S": "EndpointError" if i % 2 else "UnsupportedImage"}
    else:
        confidence = 0.99 if outcome == "classified" else 0.6
        item["label"] = {"S": "bicycle"}
        item["confidence"] = {"N": str(confidence)}
        item["probabilities"] = {"S": json.dumps({"bicycle": confidence, "motorcycle": round(1 - confidence, 2)})}
    if padding:
        item["notes"] = {"S": "x" * padding}  # makes the table bigger than one 1 MB scan page
    return item


def put(client, items):
    for item in items:
        client.put_item(TableName=TABLE, Item=item)


def count_scan_pages(client) -> list:
    pages = []
    client.meta.events.register("after-call.dynamodb.Scan", lambda **kwargs: pages.append(1))
    return pages


def test_every_page_of_the_table_is_read(dynamodb):
    outcomes = ["classified"] * 20 + ["needs_review"] * 8 + ["failed"] * 4
    # 32 items of ~100 KB: DynamoDB (and moto) return at most 1 MB per scan call.
    put(dynamodb, [result_item(i, o, padding=100_000) for i, o in enumerate(outcomes)])
    pages = count_scan_pages(dynamodb)

    data = read_results(TABLE, client=dynamodb)

    assert len(pages) > 1
    assert len(data.items) == 32 and not data.bad_items
    assert sorted(r.key for r in data.items) == [f"uploads/{i:04d}.png" for i in range(32)]


def test_summary_has_the_outcome_mix_review_rate_failures_and_latency(dynamodb):
    outcomes = ["classified"] * 6 + ["needs_review"] * 2 + ["failed"] * 3
    put(dynamodb, [result_item(i, o, latency_s=1.0 + i) for i, o in enumerate(outcomes)])

    summary = summarise_results(read_results(TABLE, client=dynamodb))

    assert summary["items"] == 11
    assert summary["outcomes"] == {"classified": 6, "needs_review": 2, "reviewed": 0, "rejected": 0, "failed": 3}
    # Failed images never got a confidence, so the review rate is over the 8 scored ones.
    assert summary["needs_review_rate"] == pytest.approx(2 / 8)
    # items 8, 9, 10 failed: odd index -> EndpointError
    assert summary["failure_reasons"] == {"UnsupportedImage": 2, "EndpointError": 1}
    latency = summary["latency_seconds"]
    assert latency["n"] == 11 and latency["p50"] == pytest.approx(6.0) and latency["max"] == pytest.approx(11.0)


def test_items_read_carry_the_confidence_as_a_number(dynamodb):
    put(dynamodb, [result_item(0, "needs_review")])
    [item] = read_results(TABLE, client=dynamodb).items
    assert item.outcome == "needs_review" and item.label == "bicycle"
    assert isinstance(item.confidence, float) and item.confidence == pytest.approx(0.6)
    assert item.latency_seconds == pytest.approx(2.0)


def test_unusable_items_are_counted_by_reason(dynamodb):
    put(dynamodb, [result_item(i, "classified") for i in range(3)])
    odd = result_item(3, "classified")
    odd["outcome"] = {"S": "pending"}
    no_time = result_item(4, "classified")
    del no_time["uploaded_at"], no_time["recorded_at"]
    put(dynamodb, [odd, no_time])

    data = read_results(TABLE, client=dynamodb)

    assert len(data.items) == 3
    assert data.bad_items == {"unknown outcome 'pending'": 1, "no recorded_at or uploaded_at": 1}


def test_since_keeps_only_recent_items(dynamodb):
    put(dynamodb, [result_item(i, "classified", latency_s=0) for i in range(10)])
    data = read_results(TABLE, client=dynamodb, since=START + timedelta(minutes=7))
    assert [r.key for r in data.items] == ["uploads/0007.png", "uploads/0008.png", "uploads/0009.png"]
    assert data.before_since == 7


def test_missing_table_is_an_input_error(dynamodb):
    with pytest.raises(MonitoringInputError, match="results table not found: nope"):
        read_results("nope", client=dynamodb)


def test_no_region_configured_is_an_input_error(monkeypatch, tmp_path):
    # Without a region boto3 cannot even create the client; the CLI must still exit 2, not crash.
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    with pytest.raises(MonitoringInputError, match="cannot scan results table results"):
        read_results(TABLE)
