"""The local twin: template.yaml, the ASL file and the handlers, running on one machine without AWS or Docker.

moto in server mode emulates S3, EventBridge, Step Functions, DynamoDB and SQS on one port, so any AWS
client (the AWS CLI, boto3) can talk to it; training.serving.endpoint serves the shipped model as the SageMaker
endpoint; local.lambda_runtime runs the functions; local.adapters bridges what moto lacks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import requests
from botocore.config import Config
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from contracts.results import ResultRecord, get_record, scan_results, wait_for_records
from contracts.stack import TWIN_CREDENTIALS, TWIN_PORT, TWIN_REGION
from local.adapters import LambdaInvokeBridge, StepFunctionsTargetRelay
from local.deploy import Deployment, deploy, role_credentials
from local.faults import FaultInjector
from local.front_door.authorizer import JwksCache
from local.front_door.gateway import Gateway
from local.front_door.post_policy import PostPolicyEnforcer
from local.front_door.managed_login import ManagedLogin
from local.front_door.server import WsgiServer, by_path
from local.front_door.token_endpoint import TokenEndpoint
from local.front_door.user_grants import UserGrants
from local.lambda_runtime import LambdaRuntime
from local.moto_speedups import MotoSpeedups
from local.moto_strict import StrictMoto
from local.template import ACCOUNT_ID, Stack
from training.serving.capture import CaptureConfig
from training.serving.endpoint import EndpointServer, start_endpoint
from training.threshold import of_model as model_threshold

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("twin")

REGION = TWIN_REGION
CREDENTIALS = {"AWS_ACCESS_KEY_ID": TWIN_CREDENTIALS["aws_access_key_id"],
               "AWS_SECRET_ACCESS_KEY": TWIN_CREDENTIALS["aws_secret_access_key"], "AWS_SESSION_TOKEN": "local-twin"}
DEFAULT_ENDPOINT_NAME = "vehicle-classifier"


@dataclass
class TwinSettings:
    port: int = TWIN_PORT
    endpoint_port: int = 0  # any free port; `make local` uses contracts.stack.TWIN_ENDPOINT_PORT
    api_port: int = 0  # the HTTP API (ApiUrl); `make local` uses contracts.stack.TWIN_API_PORT
    auth_port: int = 0  # the user pool's token endpoint (TokenUrl); `make local` uses contracts.stack.TWIN_AUTH_PORT
    review_port: int = 0  # the review API (ReviewPageUrl); `make local` uses contracts.stack.TWIN_REVIEW_PORT
    stack_name: str = "scones-twin"
    template: Path = ROOT / "template.yaml"
    model_dir: Path | None = None
    capture_dir: Path | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    # Worker processes per function: 2 gave the same throughput as 4 on 2 cores (make benchmark-twin), with half the
    # memory.
    lambda_concurrency: int = 2
    # The API's functions mostly wait (a GET with ?wait= holds its worker up to 20 s, as it holds a Lambda
    # execution environment): more workers each, so one caller's long poll does not queue everyone else's.
    api_function_concurrency: int = 4


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortInUseError(OSError):
    """A port the twin needs is taken; ``setting`` names what moves it."""

    def __init__(self, port: int, setting: str):
        super().__init__(f"port {port} on 127.0.0.1 is in use")
        self.port, self.setting = port, setting


def _ensure_free(port: int, setting: str) -> None:
    """moto's server thread would fail silently on a busy port; say so up front, naming what moves it."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise PortInUseError(port, setting) from None


class _MotoWithPostPolicies(ThreadedMotoServer):
    """moto's server with S3's presigned POST checks in front (local/front_door/post_policy.py)."""

    def __init__(self, strict: StrictMoto, **kwargs: Any):
        super().__init__(**kwargs)
        self._strict = strict

    def _server_entry(self) -> None:  # ThreadedMotoServer's, with the app wrapped
        app = PostPolicyEnforcer(DomainDispatcherApplication(create_backend_app), self._strict.secret_of,
                                 self._strict.permits)
        from moto.moto_server.threaded_moto_server import MotoRequestHandler

        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


def _printable(text: str) -> str:
    """Keys are user input: in the twin's console a control character or a direction override is shown as an
    escape (\\x1b, \\u202e), never obeyed by the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def _relocated(value: str, addresses: dict[str, str]) -> str:
    for aws, local in addresses.items():
        if value.startswith(aws):
            return local + value[len(aws):]
    return value


def _relocate_app_clients(cognito, pool: str, addresses: dict[str, str]) -> None:
    """App clients' callback and sign-out URLs on an address the twin serves locally, as UpdateUserPoolClient
    would set them (it replaces every setting, so the others are passed back as they are)."""
    for listed in cognito.list_user_pool_clients(UserPoolId=pool, MaxResults=60)["UserPoolClients"]:
        client = cognito.describe_user_pool_client(UserPoolId=pool, ClientId=listed["ClientId"])["UserPoolClient"]
        moved = {name: [_relocated(url, addresses) for url in client.get(name, [])]
                 for name in ("CallbackURLs", "LogoutURLs")}
        if all(moved[name] == client.get(name, []) for name in moved):
            continue
        settings = {k: v for k, v in client.items() if k not in (
            "ClientSecret", "CreationDate", "LastModifiedDate", "UserPoolId", "ClientId")}
        cognito.update_user_pool_client(UserPoolId=pool, ClientId=listed["ClientId"], **{**settings, **moved})


def _pool(user_pool_id: str):
    """moto's user pool: its signing key and its register of refresh tokens (which global sign-out empties)."""
    from moto.cognitoidp.models import cognitoidp_backends

    return cognitoidp_backends[ACCOUNT_ID][REGION].user_pools[user_pool_id]


def _pool_signing_key(user_pool_id: str):
    """The private key moto's cognito-idp signs a pool's tokens with (its JWKS serves the public half), so the
    twin's token endpoint issues tokens that verify against the pool's JWKS as Cognito's do."""
    return _pool(user_pool_id).json_web_key


class Twin:
    def __init__(self, settings: TwinSettings | None = None):
        self.settings = settings or TwinSettings()
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self.metrics: list[dict[str, Any]] = []  # every EMF document the functions printed
        self.deployment: Deployment | None = None
        self.endpoint: EndpointServer | None = None
        self._endpoint_recovery: threading.Timer | None = None
        self._moto: ThreadedMotoServer | None = None
        self._runtime: LambdaRuntime | None = None
        self._bridge: LambdaInvokeBridge | None = None
        self.faults = FaultInjector()  # python -m local --fault ...; tests add faults while the twin runs
        self._relay: StepFunctionsTargetRelay | None = None
        self._speedups: MotoSpeedups | None = None
        self._strict: StrictMoto | None = None
        self._watch: dict[str, tuple[str, str, float]] = {}
        self._watch_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._front_door: list[WsgiServer] = []

    # ------------------------------------------------------------------ clients
    def client(self, service: str):
        """A boto3 client for the emulated services, configured as a user's would be."""
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            config=Config(retries={"mode": "standard", "max_attempts": 3}))

    def function_pool(self, logical_id: str):
        """The running workers of a function (the template's logical id), e.g. to shorten its timeout."""
        return self._runtime.find(self.deployment.functions[logical_id].name)

    @property
    def outputs(self) -> dict[str, str]:
        return self.deployment.outputs

    @property
    def endpoint_name(self) -> str:
        return self.deployment.stack.parameters["EndpointName"]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Twin":
        s = self.settings
        # The template and its parameters first: a bad override is the user's first error to see.
        # The twin thresholds its model with the model's own threshold (metadata.json), as promotion sets the
        # stack's ConfidenceThreshold on AWS; an explicit --parameter ConfidenceThreshold=... still wins.
        model_dir = s.model_dir or ROOT / "training" / "model"
        parameters = {"EndpointName": DEFAULT_ENDPOINT_NAME, "ConfidenceThreshold": f"{model_threshold(model_dir):g}",
                      **s.parameters}
        stack = Stack.load(s.template, name=s.stack_name, region=REGION, parameters=parameters)
        _ensure_free(s.port, "port")
        for setting in ("endpoint_port", "api_port", "auth_port", "review_port"):
            if getattr(s, setting):  # 0: any free port
                _ensure_free(getattr(s, setting), setting)
        # moto's Step Functions engine calls the other services over HTTP on MOTO_PORT, with boto3.
        os.environ["MOTO_PORT"] = str(s.port)
        # Strict first: the speed-ups then cache the engine clients it makes (signed as the state machine's role).
        self._strict = StrictMoto().install()  # where AWS is strict and moto is not
        self._speedups = MotoSpeedups().install()
        self._moto = _MotoWithPostPolicies(self._strict, ip_address="127.0.0.1", port=s.port, verbose=False)
        self._moto.start()
        # moto keeps its state per process: start from empty, as a fresh account would.
        requests.post(f"{self.url}/moto-api/reset", timeout=5).raise_for_status()
        requests.post(f"{self.url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}},
                      timeout=5).raise_for_status()

        stack.queue_url_base = self.url
        capture = CaptureConfig(destination=str(s.capture_dir), sampling_percentage=100) if s.capture_dir else None
        self.endpoint = start_endpoint(model_dir, port=s.endpoint_port,
                                       endpoint_name=stack.parameters["EndpointName"], capture=capture,
                                       region=REGION)
        # Handlers reach AWS only through the standard configuration, exactly as in Lambda.
        base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": "UTC",
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.url, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.endpoint.url,
            "AWS_LAMBDA_RUNTIME_API": "local-twin", "AWS_EXECUTION_ENV": "AWS_Lambda_python_local_twin",
        }
        self._runtime = LambdaRuntime(base_env=base_env, concurrency=s.lambda_concurrency,
                                      on_output=self._function_output)
        self._bridge = LambdaInvokeBridge(self._runtime, authorize=self._strict.authorize)
        self._bridge.install()
        self.faults.install()
        self._relay = StepFunctionsTargetRelay(self.client("sqs"), self.client("stepfunctions"),
                                               client_as=self._stepfunctions_as)
        events = self.client("events")
        self._relay.install(events)
        self._relay.on_started(self._track)
        self.deployment = deploy(stack, lambda service: events if service == "events" else self.client(service),
                                 self._runtime, api_function_concurrency=s.api_function_concurrency)
        (machine_role,) = self.deployment.state_machine_credentials.values()
        self._strict.act_as_state_machine(machine_role)
        self._open_front_door()  # before the functions start: it relocates their AWS addresses
        self._runtime.warm_up()
        self._relay.start()
        self._watcher = threading.Thread(target=self._watch_executions, name="twin-watcher", daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for server in self._front_door:
            server.stop()
        if self._endpoint_recovery:
            self._endpoint_recovery.cancel()
        if self._relay:
            self._relay.stop()
        if self._watcher:
            self._watcher.join(timeout=5)
        if self._bridge:
            self._bridge.uninstall()
            self.faults.uninstall()
        if self._runtime:
            self._runtime.close()
        if self.endpoint:
            self.endpoint.stop()
        if self._moto:
            self._moto.stop()
        if self._speedups:
            self._speedups.uninstall()
        if self._strict:
            self._strict.uninstall()

    def __enter__(self) -> "Twin":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _open_front_door(self) -> None:
        """The HTTP API and the user pool's domain (the token endpoint and managed login), which moto does not
        serve (local/front_door). Their local addresses replace the stack's AWS ones wherever the stack names
        them: outputs (ApiUrl, TokenUrl, ReviewPageUrl), app clients' callback URLs, functions' environment."""
        s = self.settings
        stack = self.deployment.stack
        jwks = JwksCache(lambda issuer: f"{self.url}/{issuer.rsplit('/', 1)[-1]}/.well-known/jwks.json")
        addresses = {}
        ports = {"PhotoApi": s.api_port, "ReviewApi": s.review_port}  # the template's HTTP APIs
        for logical_id, api_id in self.deployment.apis.items():
            gateway = Gateway(self.client("apigatewayv2"), api_id, self._runtime, jwks, ACCOUNT_ID)
            server = WsgiServer(gateway, ports.get(logical_id, 0), name=f"twin-{logical_id}")
            self._front_door.append(server)
            addresses[f"https://{api_id}.execute-api.{REGION}.amazonaws.com"] = server.url
        if "UserPoolId" in self.outputs:
            pool, cognito = self.outputs["UserPoolId"], self.client("cognito-idp")
            grants = UserGrants(signed_out=_pool(pool).refresh_tokens)
            token = TokenEndpoint(cognito, pool, REGION, _pool_signing_key(pool), grants)
            server = WsgiServer(by_path({"/oauth2/token": token}, ManagedLogin(cognito, pool, grants)), s.auth_port,
                                name="twin-auth")
            self._front_door.append(server)
            for domain in stack.of_type("AWS::Cognito::UserPoolDomain"):
                addresses[f"https://{stack.physical_ids[domain]}.auth.{REGION}.amazoncognito.com"] = server.url
            _relocate_app_clients(cognito, pool, addresses)
        self.deployment.outputs.update({name: _relocated(value, addresses) for name, value in self.outputs.items()})
        for function in self.deployment.functions.values():
            workers = self._runtime.find(function.name)
            workers.function = dataclasses.replace(workers.function, environment={
                name: _relocated(value, addresses) for name, value in workers.function.environment.items()})

    def _stepfunctions_as(self, role_arn: str):
        """A Step Functions client acting with temporary credentials of ``role_arn`` (an EventBridge target's)."""
        credentials = role_credentials(self.client("sts"), role_arn, "twin-eventbridge")
        return boto3.client("stepfunctions", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"])

    def take_endpoint_down(self, seconds: float) -> None:
        """An endpoint outage: the endpoint stops now and comes back by itself after ``seconds``, on its port."""
        if seconds <= 0:
            raise ValueError(f"an outage lasts a positive number of seconds, got {seconds}")
        self.endpoint.stop()
        log.warning("endpoint %s is down; it comes back in %.0f s", self.endpoint.endpoint_name, seconds)
        self._endpoint_recovery = threading.Timer(seconds, self._recover_endpoint)
        self._endpoint_recovery.daemon = True
        self._endpoint_recovery.start()

    def _recover_endpoint(self) -> None:
        if self._stop.is_set():
            return
        self.restart_endpoint()
        log.warning("endpoint %s is back at %s", self.endpoint.endpoint_name, self.endpoint.url)

    def restart_endpoint(self) -> None:
        """Bring the endpoint back on the same port after ``self.endpoint.stop()``."""
        old = self.endpoint
        self.endpoint = start_endpoint(old.model_dir, port=old.port, endpoint_name=old.endpoint_name,
                                       variant=old.variant, max_payload_bytes=old.max_payload_bytes,
                                       capture=old.capture.config if old.capture else None, region=REGION)

    # ------------------------------------------------------------------ observing the flow
    def _function_output(self, function: str, line: str) -> None:
        short = function.split("-")[-2] if function.count("-") >= 2 else function
        try:
            document = json.loads(line)
        except ValueError:
            log.info("[%s] %s", short, line)
            return
        if isinstance(document, dict) and "_aws" in document:
            self.metrics.append(document)
            names = [m["Name"] for d in document["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]
            values = " ".join(f"{n}={document.get(n)}" for n in names)
            dims = " ".join(f"{k}={document[k]}" for d in document["_aws"]["CloudWatchMetrics"]
                            for ds in d["Dimensions"] for k in ds if k not in ("service",))
            log.info("[%s] metric %s (%s)", short, values, dims)
        elif isinstance(document, dict) and "message" in document:
            where = f" s3://{document.get('s3_bucket', '?')}/{document['s3_key']}" if "s3_key" in document else ""
            log.info("[%s] %s %s%s", short, document.get("level", ""), _printable(document["message"]),
                     _printable(where))
        else:
            log.info("[%s] %s", short, line)

    def _track(self, record: dict[str, str], event: dict[str, Any]) -> None:
        detail = event.get("detail", {})
        bucket, key = detail.get("bucket", {}).get("name", "?"), detail.get("object", {}).get("key", "?")
        key = unquote_plus(key)  # S3 events carry the key URL-encoded
        log.info("started %s for s3://%s/%s", record["execution_arn"].rsplit(":", 1)[-1], bucket, _printable(key))
        with self._watch_lock:
            self._watch[record["execution_arn"]] = (bucket, key, time.monotonic())

    # Describing every running execution in a burst would cost the emulator more than the executions do:
    # the watcher looks at most this many per second, so in a burst it notices completions later (the logged
    # duration is the execution's own, from its start and stop dates).
    WATCH_DESCRIBES_PER_SECOND = 40

    def _watch_executions(self) -> None:
        sfn = self.client("stepfunctions")
        interval = 0.25
        while not self._stop.wait(interval):
            with self._watch_lock:
                pending = list(self._watch.items())
            interval = max(0.25, len(pending) / self.WATCH_DESCRIBES_PER_SECOND)
            for arn, (bucket, key, started) in pending:
                try:
                    described = sfn.describe_execution(executionArn=arn)
                except Exception as exc:  # the emulator is going away
                    log.debug("describe_execution failed: %s", exc)
                    continue
                if described["status"] == "RUNNING":
                    continue
                with self._watch_lock:
                    self._watch.pop(arn, None)
                output = json.loads(described["output"]) if described.get("output") else None
                summary = (f"{output.get('outcome')} {output.get('label')} {output.get('confidence', 0):.3f}"
                           if output else self._failure_reason(bucket, key))
                took = (described["stopDate"] - described["startDate"]).total_seconds() \
                    if described.get("stopDate") else time.monotonic() - started
                log.info("%s %s s3://%s/%s: %s (%.2fs)", "done" if described["status"] == "SUCCEEDED" else "FAILED",
                         arn.rsplit(":", 1)[-1], bucket, _printable(key), summary, took)

    def _failure_reason(self, bucket: str, key: str) -> str:
        item = get_record(self.client("dynamodb"), self.outputs["ResultsTableName"], bucket, key) or {}
        reason = item.get("reason", "no record")
        try:
            message = json.loads(item["error_detail"])["errorMessage"]
        except (KeyError, ValueError, TypeError):
            message = item.get("error_detail", "")
        return f"{reason}: {message}"[:300]

    # ------------------------------------------------------------------ results
    def results(self) -> list[ResultRecord]:
        """Every record of the results table, with numbers and JSON attributes decoded."""
        return scan_results(self.client("dynamodb"), self.outputs["ResultsTableName"])

    def wait_for_results(self, keys: set[str], timeout_s: float,
                         progress: Callable[[int, int], None] | None = None,
                         poll_s: float = 0.1) -> dict[str, ResultRecord]:
        """The records of ``keys`` by key, once all are in or ``timeout_s`` has passed (then some may be missing)."""
        return wait_for_records(self.client("dynamodb"), self.outputs["ResultsTableName"],
                                self.outputs["IntakeBucketName"], keys, timeout_s, progress=progress, poll_s=poll_s)
