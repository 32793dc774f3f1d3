"""Leases: which waiting photos each reviewer holds, so two people are not shown the same photo at once.

SQS cannot list a queue, and a message can be deleted only with the receipt of the receive that returned it.
So a reviewer's listing receives messages with a visibility timeout of ``lease_seconds`` (nobody else
receives them meanwhile) and records each in the leases table under the reviewer - with its receipts, since
a Lambda invocation keeps nothing - so that reviewer's next listing finds them again and extends them, and
their decision deletes the message. A lease that runs out is dropped: the message is visible again and the
next listing, anyone's, leases it afresh. Rows expire by TTL a day after their lease.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

from botocore.exceptions import ClientError

from waiting import WaitingImage

ROW_TTL_SECONDS = 86_400
# What SQS answers for the receipt of a receive whose visibility ran out (the message was received again since).
STALE_RECEIPT = ("ReceiptHandleIsInvalid", "InvalidParameterValue")


def _stale(exc: ClientError, *also: str) -> bool:
    return exc.response["Error"]["Code"] in STALE_RECEIPT + also


@dataclass
class Lease:
    reviewer: str
    image: WaitingImage
    receipts: list[str]
    until: float  # epoch seconds the messages' visibility runs out
    preview: str = ""  # "" (not made yet), "ready", "deleted" or "unreadable"
    fresh: bool = field(default=False, compare=False)  # leased by this listing


class Leases:
    def __init__(self, sqs, dynamodb, queue_url: str, table: str, lease_seconds: int,
                 clock: Callable[[], float] = time.time):
        self._sqs, self._dynamodb, self._url, self._table = sqs, dynamodb, queue_url, table
        self.lease_seconds, self._clock = lease_seconds, clock

    def mine(self, reviewer: str) -> list[Lease]:
        """Every lease row of the reviewer's, current or run out."""
        leases, start = [], {}
        while True:
            page = self._dynamodb.query(TableName=self._table, KeyConditionExpression="reviewer = :r",
                                        ExpressionAttributeValues={":r": {"S": reviewer}}, ConsistentRead=True,
                                        **start)
            leases += [self._lease(item) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return leases
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}

    def get(self, reviewer: str, image_id: str) -> Lease | None:
        item = self._dynamodb.get_item(TableName=self._table, ConsistentRead=True,
                                       Key={"reviewer": {"S": reviewer}, "id": {"S": image_id}}).get("Item")
        return self._lease(item) if item else None

    def receive(self, count: int) -> list[dict[str, Any]]:
        """Up to ``count`` (at most 10) messages, invisible to everyone else for the lease."""
        return self._sqs.receive_message(
            QueueUrl=self._url, MaxNumberOfMessages=max(1, min(10, count)), WaitTimeSeconds=0,
            VisibilityTimeout=self.lease_seconds, MessageSystemAttributeNames=["SentTimestamp"]).get("Messages", [])

    def hold(self, reviewer: str, image: WaitingImage, receipt: str) -> Lease:
        lease = Lease(reviewer, image, [receipt], self._clock() + self.lease_seconds, fresh=True)
        self._save(lease)
        return lease

    def add_receipt(self, lease: Lease, receipt: str, sent_at: float) -> None:
        """Another copy of the lease's message (a requeue): deleted with it; the photo waits since the first."""
        lease.receipts.append(receipt)
        lease.image.sent_at = min(lease.image.sent_at, sent_at)
        self._save(lease)

    def extend(self, lease: Lease) -> bool:
        """Another full lease, while the reviewer still has the photo on screen; False if it was lost (its
        messages were received by someone else after it ran out)."""
        kept = []
        for receipt in lease.receipts:
            try:
                self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=receipt,
                                                    VisibilityTimeout=self.lease_seconds)
                kept.append(receipt)
            except ClientError as exc:
                if not _stale(exc, "AWS.SimpleQueueService.MessageNotInflight"):
                    raise
        if not kept:
            self.drop(lease)
            return False
        lease.receipts, lease.until = kept, self._clock() + self.lease_seconds
        self._save(lease)
        return True

    def set_preview(self, lease: Lease, preview: str) -> None:
        lease.preview = preview
        self._save(lease)

    def settle(self, lease: Lease) -> None:
        """The photo needs no person any more: delete its messages, then the lease."""
        self.delete_messages(lease.receipts)
        self.drop(lease)

    def delete_messages(self, receipts: list[str]) -> None:
        for receipt in receipts:
            try:
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=receipt)
            except ClientError as exc:
                # The message returns, and whoever receives it next finds the photo settled and deletes it.
                if not _stale(exc):
                    raise

    def retry_later(self, receipt: str, seconds: int) -> None:
        """Let a message be received again soon (its record is not written yet, or a decision is running)."""
        try:
            self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=receipt, VisibilityTimeout=seconds)
        except ClientError as exc:
            if not _stale(exc):
                raise

    def drop(self, lease: Lease) -> None:
        self._dynamodb.delete_item(TableName=self._table,
                                   Key={"reviewer": {"S": lease.reviewer}, "id": {"S": lease.image.id}})

    def waiting(self) -> int:
        """Messages in the queue, visible or leased (approximate, as SQS counts them)."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self._url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def _save(self, lease: Lease) -> None:
        self._dynamodb.put_item(TableName=self._table, Item={
            "reviewer": {"S": lease.reviewer}, "id": {"S": lease.image.id},
            "image": {"S": json.dumps(lease.image.body())}, "sent_at": {"N": str(lease.image.sent_at)},
            "receipts": {"L": [{"S": r} for r in lease.receipts]}, "until": {"N": f"{lease.until:.3f}"},
            "preview": {"S": lease.preview}, "expires_at": {"N": str(int(lease.until) + ROW_TTL_SECONDS)}})

    @staticmethod
    def _lease(item: dict[str, Any]) -> Lease:
        image = WaitingImage.from_body(json.loads(item["image"]["S"]), float(Decimal(item["sent_at"]["N"])))
        return Lease(reviewer=item["reviewer"]["S"], image=image, receipts=[r["S"] for r in item["receipts"]["L"]],
                     until=float(Decimal(item["until"]["N"])), preview=item.get("preview", {}).get("S", ""))
