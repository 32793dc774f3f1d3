"""The images waiting for a person: every message of the review queue, held by this page while it runs.

SQS cannot list a queue, and a message can only be deleted with the receipt of the receive that returned
it. So the page receives every waiting message and holds it (visibility timeout LEASE_SECONDS), extends the
hold before it runs out, and deletes a message only once its decision is written. Another page receives
other messages; a page that stops lets its messages return to the queue within LEASE_SECONDS.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

LEASE_SECONDS = 300  # the review queue's VisibilityTimeout in template.yaml
MAX_RECEIVES_PER_REFRESH = 100  # 1,000 messages: more than a page shows in a day


@dataclass
class WaitingImage:
    """One review message: the image it names and why it waits."""
    id: str  # the SQS message id: the page's handle for the image (never the object key)
    bucket: str
    key: str
    execution_arn: str
    reason: str  # below_threshold or audit
    label: str  # the model's
    confidence: float
    probabilities: dict[str, float]
    classes: list[str]  # in the endpoint's output order (the template's ClassNames)
    endpoint_name: str
    uploaded_at: str
    sent_at: float  # epoch seconds the message was sent
    receipts: list[str] = field(default_factory=list)  # one per copy of the message (requeue may add copies)
    leased_at: float = 0.0
    needs_check: bool = True  # its record has not been read since it was received (or must be read again)
    hidden: bool = False  # decided elsewhere: not shown while its message waits to be settled

    @classmethod
    def from_message(cls, message: dict[str, Any], now: float) -> "WaitingImage":
        body = json.loads(message["Body"])
        probabilities = body.get("probabilities") or {}
        return cls(id=message["MessageId"], bucket=body["bucket"], key=body["key"],
                   execution_arn=body["execution_arn"], reason=body.get("reason", "below_threshold"),
                   label=str(body.get("label", "")), confidence=float(body.get("confidence", 0)),
                   probabilities={str(k): float(v) for k, v in probabilities.items()},
                   classes=str(body.get("classes") or ",".join(probabilities)).split(","),
                   endpoint_name=str(body.get("endpoint_name", "")), uploaded_at=str(body.get("uploaded_at", "")),
                   sent_at=int(message.get("Attributes", {}).get("SentTimestamp", now * 1000)) / 1000,
                   receipts=[message["ReceiptHandle"]], leased_at=now)

    def as_json(self, now: float) -> dict[str, Any]:
        return {"id": self.id, "bucket": self.bucket, "key": self.key, "reason": self.reason, "label": self.label,
                "confidence": self.confidence, "probabilities": self.probabilities, "classes": self.classes, "uploaded_at": self.uploaded_at,
                "waited_seconds": round(now - self.sent_at, 1)}


class WaitingImages:
    """The review queue's messages this page holds, oldest first; safe to use from several threads."""

    def __init__(self, sqs, queue_url: str, lease_seconds: int = LEASE_SECONDS,
                 clock: Callable[[], float] = time.time, on_unreadable: Callable[[str], None] = lambda _: None):
        self._sqs, self._url, self._lease, self._clock = sqs, queue_url, lease_seconds, clock
        self._held: dict[str, WaitingImage] = {}  # by execution ARN: duplicates of one upload are one image
        self._lock = threading.Lock()
        self._on_unreadable = on_unreadable

    def refresh(self) -> None:
        """Receive what is new and extend the hold on what is held before it runs out."""
        now = self._clock()
        for _ in range(MAX_RECEIVES_PER_REFRESH):
            messages = self._sqs.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=self._lease,
                MessageSystemAttributeNames=["SentTimestamp"]).get("Messages", [])
            if not messages:
                break
            with self._lock:
                for message in messages:
                    self._hold(message, now)
        self._extend(now)

    def _hold(self, message: dict[str, Any], now: float) -> None:
        try:
            image = WaitingImage.from_message(message, now)
        except (ValueError, KeyError, TypeError) as exc:
            # Not ours to delete: after the queue's maxReceiveCount it moves to the dead-letter queue.
            self._on_unreadable(f"message {message.get('MessageId')} is not a review request: {exc}")
            return
        held = self._held.get(image.execution_arn)
        if held is None:
            self._held[image.execution_arn] = image
        elif message["ReceiptHandle"] not in held.receipts:
            held.receipts.append(message["ReceiptHandle"])
            held.sent_at = min(held.sent_at, image.sent_at)
            held.needs_check = True

    def _extend(self, now: float) -> None:
        with self._lock:
            due = [(image, receipt) for image in self._held.values() if now - image.leased_at > self._lease / 2
                   for receipt in image.receipts]
        for start in range(0, len(due), 10):
            batch = due[start:start + 10]
            answer = self._sqs.change_message_visibility_batch(QueueUrl=self._url, Entries=[
                {"Id": str(n), "ReceiptHandle": receipt, "VisibilityTimeout": self._lease}
                for n, (_, receipt) in enumerate(batch)])
            failed = {int(f["Id"]) for f in answer.get("Failed", [])}
            with self._lock:
                for n, (image, receipt) in enumerate(batch):
                    if n in failed:  # the hold ran out and another page has it now
                        image.receipts.remove(receipt)
                        if not image.receipts:
                            self._held.pop(image.execution_arn, None)
                    else:
                        image.leased_at = now

    def images(self, include_hidden: bool = False) -> list[WaitingImage]:
        with self._lock:
            return sorted((image for image in self._held.values() if include_hidden or not image.hidden),
                          key=lambda image: (image.sent_at, image.id))

    def find(self, image_id: str) -> WaitingImage | None:
        with self._lock:
            return next((image for image in self._held.values() if image.id == image_id and not image.hidden), None)

    def settle(self, image: WaitingImage) -> None:
        """Delete every copy of the image's message: called only once its record is written."""
        for receipt in list(image.receipts):
            self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=receipt)
        with self._lock:
            self._held.pop(image.execution_arn, None)

    def release(self) -> None:
        """Give every held message back to the queue at once (the page is stopping): another page, or this
        one started again, sees them now instead of when the hold runs out."""
        with self._lock:
            receipts = [receipt for image in self._held.values() for receipt in image.receipts]
            self._held.clear()
        for start in range(0, len(receipts), 10):
            self._sqs.change_message_visibility_batch(QueueUrl=self._url, Entries=[
                {"Id": str(n), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
                for n, receipt in enumerate(receipts[start:start + 10])])

    def elsewhere(self) -> int:
        """Messages this page does not hold: not yet received, or held by another page."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self._url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        total = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
        with self._lock:
            mine = sum(len(image.receipts) for image in self._held.values())
        return max(0, total - mine)
