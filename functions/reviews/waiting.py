"""A photo waiting for a person, as its review message names it, and how its text is shown safely.

The state machine's SendToReview (or `python -m review requeue`) writes the message; several copies of one
upload's message (a requeue) are one photo, identified by its execution ARN.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from typing import Any


class NotAReviewRequest(ValueError):
    """A queue message that does not name a photo waiting for review."""


@dataclass
class WaitingImage:
    """One photo waiting for a person: where it is, what the model said, why it waits."""
    id: str  # the page's handle: a hash of the execution ARN (one upload), never the object key
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
    sent_at: float  # epoch seconds the (first) message was sent

    @classmethod
    def from_body(cls, body: dict[str, Any], sent_at: float) -> "WaitingImage":
        try:
            probabilities = body.get("probabilities") or {}
            execution_arn, bucket, key = str(body["execution_arn"]), str(body["bucket"]), str(body["key"])
            return cls(id=image_id(execution_arn), bucket=bucket, key=key, execution_arn=execution_arn,
                       reason=str(body.get("reason", "below_threshold")), label=str(body.get("label", "")),
                       confidence=float(body.get("confidence", 0)),
                       probabilities={str(k): float(v) for k, v in probabilities.items()},
                       classes=str(body.get("classes") or ",".join(probabilities)).split(","),
                       endpoint_name=str(body.get("endpoint_name", "")),
                       uploaded_at=str(body.get("uploaded_at", "")), sent_at=sent_at)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NotAReviewRequest(f"not a review request: {exc!r}") from None

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> "WaitingImage":
        """From an SQS message received with the SentTimestamp attribute."""
        try:
            body = json.loads(message["Body"])
        except (KeyError, ValueError) as exc:
            raise NotAReviewRequest(f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise NotAReviewRequest("not a JSON object")
        sent_ms = message.get("Attributes", {}).get("SentTimestamp", "0")
        return cls.from_body(body, int(sent_ms) / 1000)

    def body(self) -> dict[str, Any]:
        """What a lease keeps of the message (from_body reads it back)."""
        return {"bucket": self.bucket, "key": self.key, "execution_arn": self.execution_arn, "reason": self.reason,
                "label": self.label, "confidence": self.confidence, "probabilities": self.probabilities,
                "classes": ",".join(self.classes), "endpoint_name": self.endpoint_name,
                "uploaded_at": self.uploaded_at}

    def as_json(self, now: float) -> dict[str, Any]:
        """The page's view: every text from the upload shown escaped where it could mislead (``visible``)."""
        return {"id": self.id, "key": visible(self.key), "reason": self.reason, "label": self.label,
                "confidence": self.confidence, "probabilities": self.probabilities, "classes": self.classes,
                "uploaded_at": visible(self.uploaded_at), "waited_seconds": round(max(0.0, now - self.sent_at), 1)}


def image_id(execution_arn: str) -> str:
    return hashlib.sha256(execution_arn.encode()).hexdigest()[:32]


def visible(text: str) -> str:
    """``text`` with every control, format (bidirectional overrides, zero-width) and separator character
    written as a \\uXXXX escape, so a key or a name can neither reorder what a reviewer reads nor send
    escape sequences to a terminal reading the logs. Backslashes are doubled so the escapes are unambiguous."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)
