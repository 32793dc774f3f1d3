"""A re-queued review message reads as the state machine's own: the page cannot tell them apart."""

from __future__ import annotations

import json
from pathlib import Path

from review.requeue import review_message

REPO = Path(__file__).resolve().parents[3]


def test_a_requeued_message_has_the_fields_the_state_machine_sends():
    states = json.loads((REPO / "statemachine" / "classify_image.asl.json").read_text())["States"]
    record = {"bucket": "intake", "key": "a.png", "execution_arn": "arn:aws:states:us-east-1:1:express:m:e",
              "outcome": "needs_review", "sequencer": "0062"}
    for state, reason in (("SendToReview", "below_threshold"), ("SendToAudit", "audit")):
        sent = {name.removesuffix(".$") for name in states[state]["Parameters"]["MessageBody"]}
        message = review_message({**record, "outcome": "classified", "audit": True} if reason == "audit" else record)
        assert set(message) == sent, state
        assert message["reason"] == reason and message["sequencer"] == "0062"
