"""Read the results table: every image's recorded outcome (`python -m client results`)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any, Callable
from urllib.parse import quote_plus

from boto3.dynamodb.types import TypeDeserializer

from client.console import format_columns

_deserialize = TypeDeserializer().deserialize


def decode_item(raw: dict[str, Any]) -> dict[str, Any]:
    """A results-table item as plain values: numbers as float, the JSON attribute ``probabilities`` decoded."""
    item = {k: _deserialize(v) for k, v in raw.items()}
    for k, v in item.items():
        if isinstance(v, Decimal):
            item[k] = float(v)
    if isinstance(item.get("probabilities"), str):
        item["probabilities"] = json.loads(item["probabilities"])
    return item


def scan_results(dynamodb, table: str) -> list[dict[str, Any]]:
    """All items, oldest record first."""
    items = [decode_item(raw) for page in dynamodb.get_paginator("scan").paginate(TableName=table)
             for raw in page["Items"]]
    return sorted(items, key=lambda i: (i.get("recorded_at", ""), i["key"]))


def get_record(dynamodb, table: str, bucket: str, key: str) -> dict[str, Any] | None:
    """The record of one upload, found under its key or, for a failure recorded before serialize decoded the
    key, under the key as S3's event carried it (URL-encoded)."""
    for candidate in dict.fromkeys((key, quote_plus(key, safe="/"))):
        raw = dynamodb.get_item(TableName=table, ConsistentRead=True,
                                Key={"bucket": {"S": bucket}, "key": {"S": candidate}}).get("Item")
        if raw:
            return decode_item(raw)
    return None


def get_results(dynamodb, table: str, bucket: str, keys: list[str]) -> list[dict[str, Any]]:
    """The records of ``keys`` that exist (BatchGetItem, 100 keys a call; unprocessed keys are left out)."""
    found = []
    for start in range(0, len(keys), 100):
        request = {"Keys": [{"bucket": {"S": bucket}, "key": {"S": k}} for k in keys[start:start + 100]],
                   "ConsistentRead": True}
        answer = dynamodb.batch_get_item(RequestItems={table: request})
        found += [decode_item(raw) for raw in answer["Responses"].get(table, [])]
    return found


def format_table(items: list[dict[str, Any]]) -> str:
    """One row per record; label and confidence are the model's, a reviewer's decision is in the last column."""
    rows = [("key", "outcome", "label", "confidence", "reason / decision")]
    for i in items:
        confidence = f"{i['confidence']:.3f}" if "confidence" in i else "-"
        audit = " (audit)" if i.get("review_reason") == "audit" else ""
        note = f"{i['human_label']} by {i.get('reviewer', '?')}{audit}" if i.get("human_label") else i.get("reason", "")
        rows.append((i["key"], i["outcome"], i.get("label", "-"), confidence, note))
    return format_columns(rows)


def wait_for_records(dynamodb, table: str, bucket: str, keys: set[str], timeout_s: float, *,
                     progress: Callable[[int, int], None] | None = None,
                     on_found: Callable[[str], None] | None = None,
                     poll_s: float = 0.1) -> dict[str, dict[str, Any]]:
    """The records of ``keys`` by key, once all are in or ``timeout_s`` has passed (then some may be missing).

    Reads only the keys still missing, so waiting costs the table little however full it is.
    """
    deadline = time.monotonic() + timeout_s
    found: dict[str, dict[str, Any]] = {}
    pending = sorted(keys)
    while True:
        for item in get_results(dynamodb, table, bucket, pending):
            found[item["key"]] = item
            if on_found:
                on_found(item["key"])
        pending = [k for k in pending if k not in found]
        if progress:
            progress(len(found), len(keys))
        if not pending or time.monotonic() >= deadline:
            return found
        time.sleep(poll_s)
