"""Speed-ups for moto's Step Functions engine: the one module of the twin that reaches into moto's internals.

Profiled under load (py-spy, 300 uploads), the twin spent most of its CPU time redoing work whose result
never changes. Each patch below removes one such cost and keeps what moto computes exactly as it was:

1. ``AmazonStateLanguageParser.parse``: moto re-parses the definition with ANTLR for every execution
   (80-90 ms each, 28 % of the twin's time). The parsed program is cached per definition text. Its
   components keep no per-execution state (that lives in the ``Environment`` moto creates per execution),
   except those of Map and Parallel states, so definitions with those states are parsed every time.
2. ``boto_client_for``: moto creates a new boto3 client for every Task state (19 %). Its clients depend only
   on region, service and moto's port (moto passes fixed credentials), so one client per key is reused;
   botocore clients are safe to share between threads.
3. jsonpath_ng's ``parse``: a new JSONPath parser for every path evaluation (9 %). Parsed paths are
   immutable, so they are cached per path text.
4. SQS's retention check: for every message a receive considers, moto builds all of the queue's attributes
   (counting every message in it, twice) to read one number, the retention period, which makes a burst
   quadratic in the queue's length (11-15 % of the time the twin held the GIL with the first three patches
   in place). The check reads the queue's retention period directly: the same value.
5. moto's server (werkzeug's request handler) answers with HTTP/1.0, so every request of every client, the
   engine's included, opens a TCP connection and a server thread. HTTP/1.1 keeps connections alive
   (600 uploads: 13.1-14.8 img/s against 12.3-13.0, and 8-13 % less CPU per image).
6. moto's server finds the service of every request by matching its host against the URL pattern of every
   service it has, one after the other (8 % of the twin's time with the front door's calls). The answer depends
   on the host alone, so it is kept per host.

``install()`` applies them all, ``uninstall()`` restores moto and drops the cached clients (they carry the
twin's botocore hooks). tests/integration/test_twin_speedups.py fails loudly if a moto upgrade moves or
changes what these rely on.
"""

from __future__ import annotations

import functools
import importlib
import json
import threading
from typing import Any, Callable

PARSER_MODULE = "moto.stepfunctions.parser.backend.execution_worker"
JSON_PATH_MODULE = "moto.stepfunctions.parser.asl.utils.json_path"
SQS_MODULE = "moto.sqs.models"
HTTP_HANDLER_MODULE = "werkzeug.serving"
DISPATCHER_MODULE = "moto.moto_server.werkzeug_app"
_SERVICE_TASKS = "moto.stepfunctions.parser.asl.component.state.exec.state_task"
# The modules that make clients for the integrations our state machine uses (lambda:invoke, dynamodb:putItem,
# sqs:sendMessage, events:putEvents); each imported ``boto_client_for`` by name.
CLIENT_MODULES = (
    f"{_SERVICE_TASKS}.lambda_eval_utils",
    f"{_SERVICE_TASKS}.service.state_task_service_dynamodb",
    f"{_SERVICE_TASKS}.service.state_task_service_sqs",
    f"{_SERVICE_TASKS}.service.state_task_service_events",
)
# States whose components keep per-execution state in moto (iteration and branch workers).
UNCACHEABLE_STATE_TYPES = frozenset({"Map", "Parallel"})


def _cacheable(definition: str) -> bool:
    try:
        states = json.loads(definition).get("States", {})
    except (ValueError, AttributeError):
        return False  # let moto parse it and report the error itself
    return not any(isinstance(s, dict) and s.get("Type") in UNCACHEABLE_STATE_TYPES for s in states.values())


class _CachedParser:
    """Stands in for the ``AmazonStateLanguageParser`` class where the execution worker uses it."""

    def __init__(self, parser: Any):
        self._parser = parser
        self._programs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.parsed = 0  # how many times moto's parser actually ran

    def parse(self, definition: str) -> Any:
        if not _cacheable(definition):
            self.parsed += 1
            return self._parser.parse(definition)
        with self._lock:
            if definition not in self._programs:
                self.parsed += 1
                self._programs[definition] = self._parser.parse(definition)
            return self._programs[definition]


def _retained(backend: Any, queue_name: str, message: Any) -> bool:
    """moto's SQSBackend.is_message_valid_based_on_retention_period, reading the one attribute it needs."""
    from moto.core.utils import unix_time

    retention_period = backend.get_queue(queue_name).message_retention_period
    return retention_period + message.sent_timestamp / 1000 > unix_time()


class MotoSpeedups:
    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []
        self._clients: dict[tuple, Any] = {}
        self._clients_lock = threading.Lock()
        self.parser: _CachedParser | None = None
        self.clients_made = 0

    def install(self) -> "MotoSpeedups":
        worker = importlib.import_module(PARSER_MODULE)
        self.parser = _CachedParser(worker.AmazonStateLanguageParser)
        self._patch(worker, "AmazonStateLanguageParser", self.parser)
        for name in CLIENT_MODULES:
            module = importlib.import_module(name)
            self._patch(module, "boto_client_for", self._shared_clients(module.boto_client_for))
        json_path = importlib.import_module(JSON_PATH_MODULE)
        self._patch(json_path, "parse", functools.lru_cache(maxsize=4096)(json_path.parse))
        sqs = importlib.import_module(SQS_MODULE)
        self._patch(sqs.SQSBackend, "is_message_valid_based_on_retention_period", _retained)
        serving = importlib.import_module(HTTP_HANDLER_MODULE)
        self._patch(serving.WSGIRequestHandler, "protocol_version", "HTTP/1.1")
        dispatcher = importlib.import_module(DISPATCHER_MODULE).DomainDispatcherApplication
        self._patch(dispatcher, "get_backend_for_host",
                    functools.lru_cache(maxsize=1024)(dispatcher.get_backend_for_host))
        return self

    def uninstall(self) -> None:
        while self._saved:
            module, name, original = self._saved.pop()
            setattr(module, name, original)
        with self._clients_lock:
            self._clients.clear()

    def original(self, name: str) -> Any:
        """What moto had under ``name`` before install() (the latest one patched, for names patched in several
        modules)."""
        return next(original for _, patched, original in reversed(self._saved) if patched == name)

    def _patch(self, module: Any, name: str, replacement: Any) -> None:
        self._saved.append((module, name, getattr(module, name)))
        setattr(module, name, replacement)

    def _shared_clients(self, make: Callable[..., Any]) -> Callable[..., Any]:
        from moto.core.models import botocore_stubber
        from moto.settings import moto_server_port

        def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
            # The same inputs moto's factory reads; it ignores state_credentials.
            key = (region, service, moto_server_port(), botocore_stubber.enabled)
            with self._clients_lock:
                if key not in self._clients:
                    self._clients[key] = make(region=region, service=service, state_credentials=state_credentials)
                    self.clients_made += 1
                return self._clients[key]

        return boto_client_for
