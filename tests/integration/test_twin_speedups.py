"""local/moto_speedups.py reaches into moto's Step Functions engine: these tests fail loudly when a moto
upgrade moves or changes what its patches rely on, and show each patch doing its job in the twin."""

from __future__ import annotations

import importlib
import inspect
import json

import pytest

from local.moto_speedups import CLIENT_MODULES, JSON_PATH_MODULE, PARSER_MODULE, MotoSpeedups, _cacheable
from twin_helpers import sample, wait_for

pytestmark = pytest.mark.slow


def test_moto_still_parses_each_execution_through_the_name_we_replace():
    worker = importlib.import_module(PARSER_MODULE)
    source = inspect.getsource(worker.ExecutionWorker._get_evaluation_entrypoint)
    assert "AmazonStateLanguageParser.parse(" in source
    program, tree = worker.AmazonStateLanguageParser.parse(json.dumps(
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}))
    assert program is not None and tree is not None


def test_moto_still_makes_clients_with_fixed_credentials_whatever_the_state_passes():
    for name in CLIENT_MODULES:
        module = importlib.import_module(name)
        assert list(inspect.signature(module.boto_client_for).parameters) == ["region", "service", "state_credentials"]
    make = importlib.import_module(CLIENT_MODULES[0]).boto_client_for
    one = make(region="us-east-1", service="sqs", state_credentials={"AccessKeyId": "a"})
    two = make(region="us-east-1", service="sqs", state_credentials=None)
    # The cache key leaves the credentials out because moto's factory ignores them.
    assert one._request_signer._credentials.access_key == two._request_signer._credentials.access_key


def test_moto_still_parses_json_paths_with_the_module_level_parse():
    module = importlib.import_module(JSON_PATH_MODULE)
    assert "parse(path)" in inspect.getsource(module.extract_json)
    assert module.extract_json("$.a.b", {"a": {"b": 3}}) == 3


def test_definitions_with_map_or_parallel_states_are_parsed_every_time():
    simple = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    assert _cacheable(json.dumps(simple))
    for kind in ("Map", "Parallel"):
        assert not _cacheable(json.dumps({"StartAt": "A", "States": {"A": {"Type": kind, "End": True}}}))
    assert not _cacheable("not json")


def test_install_and_uninstall_restore_moto(twin):
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    from moto.sqs.models import SQSBackend
    from werkzeug.serving import WSGIRequestHandler

    modules = [importlib.import_module(n) for n in (PARSER_MODULE, JSON_PATH_MODULE, *CLIENT_MODULES)]
    classes = [SQSBackend, WSGIRequestHandler, DomainDispatcherApplication]
    before = [dict(vars(m)) for m in modules] + [dict(vars(c)) for c in classes]
    speedups = MotoSpeedups().install()
    speedups.uninstall()
    assert [dict(vars(m)) for m in modules] + [dict(vars(c)) for c in classes] == before


def test_the_twin_parses_its_state_machine_once_and_reuses_clients(twin):
    speedups = twin._speedups
    parsed, made = speedups.parser.parsed, speedups.clients_made
    s3, bucket = twin.client("s3"), twin.outputs["IntakeBucketName"]
    keys = [f"speedups/{i}.png" for i in range(6)]
    for i, key in enumerate(keys):
        s3.upload_file(str(sample("bicycle" if i % 2 else "motorcycle", i)), bucket, key)
    records = wait_for(twin, set(keys))
    assert {r["outcome"] for r in records.values()} <= {"classified", "needs_review"}
    # Six executions of one definition: moto's parser ran at most once (and at all: the patched name is used).
    assert speedups.parser.parsed - parsed <= 1 and speedups.parser.parsed >= 1
    # One client per service the integrations call (lambda, dynamodb, sqs, events), not one per Task state.
    assert 2 <= speedups.clients_made <= 4 and speedups.clients_made - made <= 4


def test_the_retention_check_answers_as_moto_does_for_kept_and_expired_messages(twin):
    from moto.sqs.models import SQSBackend, sqs_backends

    from local.moto_speedups import SQS_MODULE, _retained

    assert SQS_MODULE == SQSBackend.__module__
    assert SQSBackend.is_message_valid_based_on_retention_period is _retained  # the twin installed it
    original = twin._speedups.original("is_message_valid_based_on_retention_period")
    assert "get_queue_attributes" in inspect.getsource(original)  # what the patch avoids
    backend = sqs_backends["123456789012"]["us-east-1"]
    backend.create_queue("speedups-retention", MessageRetentionPeriod="60")
    backend.send_message("speedups-retention", "kept")
    backend.send_message("speedups-retention", "expired")
    queue = backend.get_queue("speedups-retention")
    kept, expired = queue._messages
    expired.sent_timestamp -= 61_000  # sent 61 s ago, with 60 s of retention
    for message, retained in ((kept, True), (expired, False)):
        assert original(backend, "speedups-retention", message) is retained
        assert _retained(backend, "speedups-retention", message) is retained
    backend.delete_queue("speedups-retention")


def test_the_emulator_keeps_connections_alive(twin):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", twin.settings.port, timeout=10)
    try:
        for _ in range(2):  # two requests on one connection: the second would fail on a closed one
            connection.request("GET", "/moto-api/data.json")
            response = connection.getresponse()
            assert response.status == 200 and response.version == 11
            response.read()
    finally:
        connection.close()


def test_the_service_of_a_host_is_found_once_and_is_the_one_moto_finds(twin):
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    cached = DomainDispatcherApplication.get_backend_for_host
    assert hasattr(cached, "cache_info"), "the twin no longer memoizes moto's host -> service lookup"
    dispatcher = DomainDispatcherApplication(create_backend_app)
    original = cached.__wrapped__
    for host in ("dynamodb.us-east-1.amazonaws.com", "s3.amazonaws.com", "cognito-idp.us-east-1.amazonaws.com",
                 "apigateway.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com", "nothing.example"):
        assert cached(dispatcher, host) == original(dispatcher, host), host
    hits = cached.cache_info().hits
    cached(dispatcher, "s3.amazonaws.com")
    assert cached.cache_info().hits == hits + 1
