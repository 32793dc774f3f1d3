"""Where moto is more lenient than AWS in a way the twin can correct, corrected.

1. DynamoDB applies a conditional write atomically: the condition is checked and the write made as one step,
   so of two writers racing on one item with ``attribute_not_exists(decided_at)`` exactly one succeeds (the
   review page relies on it). moto checks the condition and writes without a lock, so under the twin's
   threaded server, or threads in one test, both writers can succeed. Each item write is serialised here.

2. S3 gives each upload of a key a greater event ``sequencer``, the only way to tell which of two events on one
   key came last (the state machine keeps the newest upload's record by it). moto puts the same constant in every
   S3 event. Each S3 notification gets the next value of one increasing counter here, stamped on the event as
   moto hands it to the rules.

3. AWS checks every call against its caller's IAM policies; moto checks none unless told to, and then checks
   every caller. The twin's principals - each Lambda function acts with temporary credentials of its own role
   from the template, as in Lambda - are checked as AWS checks them: a call signed with temporary credentials
   (AWS's "ASIA" keys, which moto's STS issues) is authenticated and authorised against the role's policies by
   moto's own IAM engine. Everyone else (the twin's users, its own set-up) stays an administrator.
   The state machine acts with its role too: ``act_as_state_machine`` makes moto's engine sign its service
   calls (DynamoDB, SQS, EventBridge, Lambda) with the role's temporary credentials, where moto signs them with
   fixed ones. moto checks DynamoDB, EventBridge and Lambda calls against the resource "*", which matches no
   policy scoped to a table, bus or function as the template's are, so the resource is named as AWS names it;
   Lambda invocations never reach moto (local/adapters.py runs them), so ``authorize`` checks them there.
   S3 answers a read of a missing key with 404 only to a caller allowed s3:ListBucket, with 403 to others;
   moto always answers 404, so a role's read of a missing key without that permission is refused here.

``StrictMoto().install()`` applies the corrections, ``uninstall()`` restores moto. The twin installs it;
tests using moto in-process install it around their ``mock_aws``.
"""

from __future__ import annotations

import functools
import importlib
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from local.template import ACCOUNT_ID  # moto's default account, the twin's

DYNAMODB_MODULE = "moto.dynamodb.models"
# The backend methods that check a condition and write an item (BatchWriteItem has no conditions).
DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
S3_NOTIFICATIONS_MODULE = "moto.s3.notifications"
S3_EVENTBRIDGE_SENDER = "_send_event_bridge_message"  # builds one S3 event, hands it to every rule
EVENTS_MODULE = "moto.events.models"
AUTHORIZATION_MODULE = "moto.core.authorization"
TEMPORARY_KEY_PREFIX = "ASIA"  # AWS's, and moto's STS's, prefix of temporary (role) credentials
REGION_FALLBACK = "us-east-1"  # the twin's region


class StrictMoto:
    def __init__(self):
        self._saved: list[tuple[Any, str, Any]] = []
        self._lock = threading.RLock()
        self._sequencer_lock = threading.Lock()
        self._last_sequencer = 0
        self._sending = threading.local()  # the sequencer of the S3 event this thread is delivering
        self.engine_credentials: dict[str, str] | None = None

    def install(self) -> "StrictMoto":
        backend = importlib.import_module(DYNAMODB_MODULE).DynamoDBBackend
        for name in DYNAMODB_WRITES:
            self._replace(backend, name, self._atomic(getattr(backend, name)))
        notifications = importlib.import_module(S3_NOTIFICATIONS_MODULE)
        send_to_eventbridge = getattr(notifications, S3_EVENTBRIDGE_SENDER)
        self._replace(notifications, S3_EVENTBRIDGE_SENDER, self._sequenced(send_to_eventbridge))
        rule = importlib.import_module(EVENTS_MODULE).Rule
        self._replace(rule, "send_to_targets", self._stamped(rule.send_to_targets))
        authenticator = importlib.import_module(AUTHORIZATION_MODULE).ActionAuthenticatorMixin
        self._replace(authenticator, "_authenticate_and_authorize_action",
                      self._roles_only(authenticator._authenticate_and_authorize_action))
        settings = importlib.import_module("moto.settings")
        self._replace(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto checks whatever reaches it
        from local.moto_speedups import CLIENT_MODULES  # where the engine makes its clients

        for name in CLIENT_MODULES:
            module = importlib.import_module(name)
            self._replace(module, "boto_client_for", self._engine_clients(module.boto_client_for))
        return self

    def act_as_state_machine(self, credentials: dict[str, str] | None) -> None:
        """Sign the engine's service calls with these temporary credentials (None: moto's fixed ones).
        Set it before the first execution: clients made before keep what they were made with."""
        self.engine_credentials = credentials

    def authorize(self, request: Any, action: str, resource: str) -> str | None:
        """Why moto's IAM refuses ``action`` on ``resource`` to a botocore request's signer (None: allowed, or not
        signed by a role). For calls the twin answers without moto (Lambda invocations)."""
        from moto.iam.access_control import IAMRequest
        from werkzeug.exceptions import HTTPException  # what moto's IAM refusals are

        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        if not _signing_key(headers).startswith(TEMPORARY_KEY_PREFIX):
            return None
        url = urlsplit(request.url)
        headers.setdefault("Host", url.netloc)  # signed, but sent by the HTTP layer, not kept in the request
        body = request.body or b""
        try:
            check = IAMRequest(account_id=ACCOUNT_ID, method=request.method,
                               path=url.path + (f"?{url.query}" if url.query else ""), data={},
                               body=body if isinstance(body, bytes) else body.encode(), headers=headers,
                               action=action.partition(":")[2])  # moto prefixes the signing service
            check.check_signature()
            check.check_action_permitted(resource)
        except HTTPException as refused:
            return getattr(refused, "message", None) or type(refused).__name__
        return None

    @staticmethod
    def secret_of(access_key_id: str) -> str | None:
        """The secret key of a role's temporary credentials (moto's STS issued them), for checking a signature
        the twin verifies itself (a presigned POST policy); None for a key moto's STS did not issue."""
        from moto.sts.models import sts_backends

        role = sts_backends[ACCOUNT_ID]["aws"].get_assumed_role_from_access_key(access_key_id)
        return role.secret_access_key if role else None

    @staticmethod
    def permits(access_key_id: str, session_token: str, region: str, action: str, resource: str) -> str | None:
        """Why moto's IAM refuses ``action`` (e.g. "s3:PutObject") on ``resource`` to the role behind a temporary
        ``access_key_id`` (None: allowed, or not a role's key). The signature is the caller's to have checked."""
        from moto.iam.access_control import IAMRequest
        from werkzeug.exceptions import HTTPException

        if not access_key_id.startswith(TEMPORARY_KEY_PREFIX):
            return None
        service, _, name = action.partition(":")
        scope = f"AWS4-HMAC-SHA256 Credential={access_key_id}/20000101/{region}/{service}/aws4_request, Signature=-"
        try:
            IAMRequest(account_id=ACCOUNT_ID, method="POST", path="/", data={}, body=b"",
                       headers={"Authorization": scope, "X-Amz-Security-Token": session_token},
                       action=name).check_action_permitted(resource)
        except HTTPException as refused:
            return getattr(refused, "message", None) or type(refused).__name__
        return None

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

    @staticmethod
    def _roles_only(authorize):
        from moto.core.exceptions import JsonRESTError
        from werkzeug.exceptions import HTTPException  # what moto's IAM refusals are

        @functools.wraps(authorize)
        def roles_only(handler: Any, iam_request_cls: type, resource: str = "*") -> Any:
            credential = _signing_key(handler.headers)
            if not credential.startswith(TEMPORARY_KEY_PREFIX):
                return None  # a user of the twin, or the twin itself: not checked
            if resource == "*":
                resource = _resource_of(handler, credential) or resource
            try:
                authorize(handler, iam_request_cls, resource)
                _missing_object_needs_list_bucket(handler, iam_request_cls, resource)
            except HTTPException as refused:
                if not handler.headers.get("X-Amz-Target"):
                    raise  # query and REST protocols read moto's XML error as AWS's
                # JSON-protocol services (DynamoDB, EventBridge, SQS) answer AccessDeniedException in JSON
                raise JsonRESTError("AccessDeniedException", getattr(refused, "message", str(refused))) from None
        return roles_only

    def _engine_clients(self, make):
        def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
            client = make(region=region, service=service, state_credentials=state_credentials)
            credentials = self.engine_credentials
            if credentials is None:
                return client
            import boto3

            return boto3.client(service, region_name=region, endpoint_url=client.meta.endpoint_url,
                                config=client.meta.config, aws_access_key_id=credentials["AccessKeyId"],
                                aws_secret_access_key=credentials["SecretAccessKey"],
                                aws_session_token=credentials["SessionToken"])
        return boto_client_for

    def _atomic(self, write):
        @functools.wraps(write)
        def atomic(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return write(*args, **kwargs)
        return atomic


def _signing_key(headers: Any) -> str:
    """The SigV4 credential scope a request was signed with: "<access key>/<date>/<region>/<service>/..."."""
    return headers.get("Authorization", "").partition("Credential=")[2]


def _resource_of(handler: Any, credential: str) -> str | None:
    """The ARN AWS checks a DynamoDB, EventBridge or StartExecution call against (moto passes "*" for these)."""
    region = credential.split("/")[2] if credential.count("/") >= 2 else REGION_FALLBACK
    target = handler.headers.get("X-Amz-Target", "")
    try:  # DynamoDB's handler has parsed its body into a dict by now; the others keep the JSON text
        body = handler.body if isinstance(handler.body, dict) else json.loads(handler.body or "{}")
    except (TypeError, ValueError):
        return None
    if target.startswith("DynamoDB_") and body.get("TableName"):
        return f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{body['TableName']}"
    if target == "AWSStepFunctions.StartExecution" and body.get("stateMachineArn"):
        return body["stateMachineArn"]
    if target == "AWSEvents.PutEvents":
        buses = {entry.get("EventBusName") or "default" for entry in body.get("Entries", [])}
        if len(buses) == 1:
            bus = buses.pop()
            return bus if bus.startswith("arn:") else f"arn:aws:events:{region}:{ACCOUNT_ID}:event-bus/{bus}"
    return None


def _missing_object_needs_list_bucket(handler: Any, iam_request_cls: type, resource: str) -> None:
    """Refuse (S3's AccessDenied) a role's read of a missing key unless the role may list the bucket."""
    if iam_request_cls.__name__ != "S3IAMRequest" or handler.method not in ("GET", "HEAD"):
        return
    bucket, _, key = resource.removeprefix("arn:aws:s3:::").partition("/")
    if not key:
        return
    try:
        if handler.backend.get_object(bucket, key) is not None:
            return
    except Exception:  # no such bucket: S3's own answer stands
        return
    url = urlsplit(handler.uri)
    check = iam_request_cls(account_id=handler.current_account, method=handler.method,
                            path=handler.raw_path + (f"?{url.query}" if url.query else ""), data=handler.data,
                            body=handler.raw_body, headers=handler.headers, action="ListBucket")
    check.check_action_permitted(f"arn:aws:s3:::{bucket}")
