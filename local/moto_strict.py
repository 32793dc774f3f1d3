"""Where moto is more lenient than AWS in a way the twin can correct, corrected.

1. DynamoDB applies a conditional write atomically: the condition is checked and the write made as one step,
   so of two writers racing on one item with ``attribute_not_exists(decided_at)`` exactly one succeeds (the
   review page relies on it). moto checks the condition and writes without a lock, so under the twin's
   threaded server, or threads in one test, both writers can succeed. Each item write is serialised here.

2. S3 gives each upload of a key a greater event ``sequencer``, the only way to tell which of two events on one
   key came last (the state machine keeps the newest upload's record by it). moto puts the same constant in every
   S3 event. Each S3 notification gets the next value of one increasing counter here, stamped on the event as
   moto hands it to the rules.

``StrictMoto().install()`` applies the corrections, ``uninstall()`` restores moto. The twin installs it;
tests using moto in-process install it around their ``mock_aws``.
"""

from __future__ import annotations

import functools
import importlib
import threading
import time
from typing import Any

DYNAMODB_MODULE = "moto.dynamodb.models"
# The backend methods that check a condition and write an item (BatchWriteItem has no conditions).
DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
S3_NOTIFICATIONS_MODULE = "moto.s3.notifications"
S3_EVENTBRIDGE_SENDER = "_send_event_bridge_message"  # builds one S3 event, hands it to every rule
EVENTS_MODULE = "moto.events.models"


class StrictMoto:
    def __init__(self):
        self._saved: list[tuple[Any, str, Any]] = []
        self._lock = threading.RLock()
        self._sequencer_lock = threading.Lock()
        self._last_sequencer = 0
        self._sending = threading.local()  # the sequencer of the S3 event this thread is delivering

    def install(self) -> "StrictMoto":
        backend = importlib.import_module(DYNAMODB_MODULE).DynamoDBBackend
        for name in DYNAMODB_WRITES:
            self._replace(backend, name, self._atomic(getattr(backend, name)))
        notifications = importlib.import_module(S3_NOTIFICATIONS_MODULE)
        self._replace(notifications, S3_EVENTBRIDGE_SENDER, self._sequenced(getattr(notifications, S3_EVENTBRIDGE_SENDER)))
        rule = importlib.import_module(EVENTS_MODULE).Rule
        self._replace(rule, "send_to_targets", self._stamped(rule.send_to_targets))
        return self

    def _replace(self, owner: Any, name: str, replacement: Any) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def next_sequencer(self) -> str:
        """An S3-style sequencer (18 upper-case hex digits), greater than every one before it."""
        with self._sequencer_lock:
            self._last_sequencer = max(self._last_sequencer + 1, time.time_ns())
            return f"{self._last_sequencer:018X}"

    def uninstall(self) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)

    def __enter__(self) -> "StrictMoto":
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def _sequenced(self, send):
        @functools.wraps(send)
        def sequenced(*args: Any, **kwargs: Any) -> Any:
            self._sending.sequencer = self.next_sequencer()
            try:
                return send(*args, **kwargs)
            finally:
                self._sending.sequencer = None
        return sequenced

    def _stamped(self, send_to_targets):
        sending = self._sending

        @functools.wraps(send_to_targets)
        def stamped(rule: Any, event: dict, *args: Any, **kwargs: Any) -> Any:
            sequencer = getattr(sending, "sequencer", None)
            if sequencer and event.get("source") == "aws.s3":
                event.get("detail", {}).get("object", {})["sequencer"] = sequencer
            return send_to_targets(rule, event, *args, **kwargs)
        return stamped

    def _atomic(self, write):
        @functools.wraps(write)
        def atomic(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return write(*args, **kwargs)
        return atomic
