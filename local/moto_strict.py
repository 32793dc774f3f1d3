"""Where moto is more lenient than AWS in a way the twin can correct, corrected.

1. DynamoDB applies a conditional write atomically: the condition is checked and the write made as one step,
   so of two writers racing on one item with ``attribute_not_exists(decided_at)`` exactly one succeeds (the
   review page relies on it). moto checks the condition and writes without a lock, so under the twin's
   threaded server, or threads in one test, both writers can succeed. Each item write is serialised here.

``StrictMoto().install()`` applies the corrections, ``uninstall()`` restores moto. The twin installs it;
tests using moto in-process install it around their ``mock_aws``.
"""

from __future__ import annotations

import functools
import importlib
import threading
from typing import Any

DYNAMODB_MODULE = "moto.dynamodb.models"
# The backend methods that check a condition and write an item (BatchWriteItem has no conditions).
DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


class StrictMoto:
    def __init__(self):
        self._saved: list[tuple[Any, str, Any]] = []
        self._lock = threading.RLock()

    def install(self) -> "StrictMoto":
        backend = importlib.import_module(DYNAMODB_MODULE).DynamoDBBackend
        for name in DYNAMODB_WRITES:
            original = getattr(backend, name)
            self._saved.append((backend, name, original))
            setattr(backend, name, self._atomic(original))
        return self

    def uninstall(self) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)

    def __enter__(self) -> "StrictMoto":
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def _atomic(self, write):
        @functools.wraps(write)
        def atomic(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return write(*args, **kwargs)
        return atomic
