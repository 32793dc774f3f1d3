"""Read the results table: `python -m local.results` prints every image's outcome.

Works against the twin (default endpoint http://127.0.0.1:4566) or, with --endpoint-url "", against AWS.
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer

from local.console import format_columns

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.results", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4566, help="the twin's port (default 4566)")
    parser.add_argument("--endpoint-url", help='override the endpoint ("" = real AWS)')
    parser.add_argument("--table", help="table name (default: the twin stack's ResultsTableName)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    endpoint = args.endpoint_url if args.endpoint_url is not None else f"http://127.0.0.1:{args.port}"
    kwargs = {"endpoint_url": endpoint} if endpoint else {}
    if endpoint:
        kwargs.update(region_name="us-east-1", aws_access_key_id="local-twin", aws_secret_access_key="local-twin")
    dynamodb = boto3.client("dynamodb", **kwargs)
    table = args.table
    if not table:
        names = [n for n in dynamodb.list_tables()["TableNames"] if "ResultsTable" in n]
        if len(names) != 1:
            print(f"found {len(names)} results tables; name one with --table", file=sys.stderr)
            return 2
        table = names[0]
    items = scan_results(dynamodb, table)
    if args.json:
        for item in items:
            print(json.dumps(item))
    else:
        print(format_table(items))
        print(f"\n{len(items)} records in {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
