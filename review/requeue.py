"""Send a review message again for every image whose record still waits for a person.

The results table is the truth: a record `needs_review` (or an audited `classified` one) without a decision
still needs one, whatever happened to its message (expired, moved to the dead-letter queue, deleted by
hand). A message sent twice is harmless: the page holds both copies as one image and deletes both.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from contracts.results import ResultRecord, scan_results


def waiting_records(dynamodb, table: str) -> list[ResultRecord]:
    return [r for r in scan_results(dynamodb, table) if not r.get("decided_at")
            and (r.outcome == "needs_review" or (r.outcome == "classified" and r.audit))]


def review_message(record: ResultRecord) -> dict[str, Any]:
    """The message the state machine sends (statemachine/classify_image.asl.json, SendToReview)."""
    return {"bucket": record["bucket"], "key": record["key"], "label": record.get("label", ""),
            "confidence": record.get("confidence", 0), "probabilities": record.get("probabilities", {}),
            "threshold": str(record.get("threshold", "")), "endpoint_name": record.get("endpoint_name", ""),
            "execution_arn": record["execution_arn"], "uploaded_at": record.get("uploaded_at", ""),
            "sequencer": record.get("sequencer", "0"), "classes": record.get("classes", ""),
            "reason": "audit" if record.get("outcome") == "classified" else "below_threshold"}


def requeue(dynamodb, sqs, table: str, queue_url: str, dry_run: bool = False,
            log: Callable[[str], None] = lambda _: None) -> int:
    records = waiting_records(dynamodb, table)
    for record in records:
        log(f"{'would send' if dry_run else 'sending'} {record['key']} ({record['outcome']})")
        if not dry_run:
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(review_message(record)))
    return len(records)
