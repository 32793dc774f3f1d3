"""The results record: the item as stored, decoded, and the same attributes typed; what makes one unusable."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from contracts.results import ResultRecord, decode_item

RAW = {"bucket": {"S": "intake"}, "key": {"S": "photos/a.png"}, "outcome": {"S": "classified"},
       "label": {"S": "bicycle"}, "confidence": {"N": "0.97"}, "probabilities": {"S": '{"bicycle": 0.97}'},
       "uploaded_at": {"S": "2026-12-01T10:00:00Z"}, "recorded_at": {"S": "2026-12-01T10:00:02.5Z"},
       "audit": {"BOOL": True}, "threshold": {"N": "0.93"}}


def test_as_a_mapping_the_record_is_the_item_as_stored_with_numbers_and_json_decoded():
    record = decode_item(RAW)
    assert json.loads(json.dumps(record)) == {
        "bucket": "intake", "key": "photos/a.png", "outcome": "classified", "label": "bicycle", "confidence": 0.97,
        "probabilities": {"bicycle": 0.97}, "uploaded_at": "2026-12-01T10:00:00Z",
        "recorded_at": "2026-12-01T10:00:02.5Z", "audit": True, "threshold": 0.93}


def test_its_properties_are_the_same_attributes_typed():
    record = decode_item(RAW)
    assert (record.bucket, record.key, record.outcome, record.label) == ("intake", "photos/a.png", "classified",
                                                                         "bicycle")
    assert record.confidence == pytest.approx(0.97) and record.audit is True
    assert record.recorded_at == datetime(2026, 12, 1, 10, 0, 2, 500000, tzinfo=timezone.utc)
    assert record.time == record.recorded_at and record.latency_seconds == pytest.approx(2.5)
    assert record.human_label is None and record.decided_at is None and record.waited_seconds is None


@pytest.mark.parametrize(("change", "reason"), [
    ({"outcome": "pending"}, "unknown outcome 'pending'"),
    ({"uploaded_at": None, "recorded_at": None}, "no recorded_at or uploaded_at"),
    ({"uploaded_at": "yesterday"}, "uploaded_at is not ISO-8601"),
    ({"decided_at": "soon"}, "decided_at is not ISO-8601"),
])
def test_validated_names_what_makes_a_record_unusable(change, reason):
    attributes = {k: v for k, v in {**decode_item(RAW), **change}.items() if v is not None}
    with pytest.raises(ValueError, match=reason):
        ResultRecord(attributes).validated()
