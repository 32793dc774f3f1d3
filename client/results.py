"""Read the results table: every image's recorded outcome (`python -m client results`)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from client.console import format_columns

_deserialize = TypeDeserializer().deserialize


def scan_results(dynamodb, table: str) -> list[dict[str, Any]]:
    """All items, oldest record first; numbers as float, the JSON attribute ``probabilities`` decoded."""
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for raw in page["Items"]:
            item = {k: _deserialize(v) for k, v in raw.items()}
            for k, v in item.items():
                if isinstance(v, Decimal):
                    item[k] = float(v)
            if isinstance(item.get("probabilities"), str):
                item["probabilities"] = json.loads(item["probabilities"])
            items.append(item)
    return sorted(items, key=lambda i: (i.get("recorded_at", ""), i["key"]))


def format_table(items: list[dict[str, Any]]) -> str:
    rows = [("key", "outcome", "label", "confidence", "reason")]
    for i in items:
        confidence = f"{i['confidence']:.3f}" if "confidence" in i else "-"
        rows.append((i["key"], i["outcome"], i.get("label", "-"), confidence, i.get("reason", "")))
    return format_columns(rows)
