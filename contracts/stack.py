"""Where the stack is: a deployed stack (names from its CloudFormation outputs) or the local twin."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

# The twin's defaults: `make local` listens here (PORT / ENDPOINT_PORT move it).
TWIN_PORT = 4590
TWIN_ENDPOINT_PORT = 4591
TWIN_API_PORT = 4593  # the HTTP API (ApiUrl)
TWIN_AUTH_PORT = 4594  # the token endpoint (TokenUrl)
TWIN_REVIEW_PORT = 4592  # the review page and its API (ReviewPageUrl, ReviewApiUrl)
# Where `make local` writes the twin's stack outputs as JSON (ApiUrl, TokenUrl, UserPoolId, ...).
TWIN_OUTPUTS = Path(__file__).resolve().parent.parent / "build" / "twin" / "outputs.json"
TWIN_REGION = "us-east-1"
TWIN_CREDENTIALS = {"aws_access_key_id": "local-twin", "aws_secret_access_key": "local-twin"}
REGION_HINT = ("export AWS_DEFAULT_REGION=<region> (boto3 reads AWS_DEFAULT_REGION, not AWS_REGION) "
               "or run `aws configure`")


class TargetError(Exception):
    """The stack or the twin cannot be reached or is not what we expect; the message names the fix."""


@dataclass
class Target:
    description: str
    bucket: str
    table: str
    session: boto3.session.Session
    endpoint_url: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)  # the stack's outputs (the twin's, found by name)

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.endpoint_url,
                                   config=Config(retries={"mode": "standard", "max_attempts": 5}))


def twin(port: int = TWIN_PORT, outputs_file: Path = TWIN_OUTPUTS) -> Target:
    """The twin started by `make local` on ``port``: its one intake bucket and results table, its user pool and
    API; the addresses only the twin knows (ApiUrl, TokenUrl) from the outputs file it wrote."""
    url = f"http://127.0.0.1:{port}"
    session = boto3.session.Session(region_name=TWIN_REGION, **TWIN_CREDENTIALS)
    target = Target(f"the local twin at {url}", "", "", session, url)
    try:
        buckets = [b["Name"] for b in target.client("s3").list_buckets()["Buckets"] if "-intakebucket-" in b["Name"]]
        tables = [t for t in target.client("dynamodb").list_tables()["TableNames"] if "-ResultsTable-" in t]
    except EndpointConnectionError:
        raise TargetError(f"nothing answers at {url}: start the twin with `make local` (PORT={port}), "
                          "or pass --stack NAME for a deployed stack") from None
    if len(buckets) != 1 or len(tables) != 1:
        raise TargetError(f"{url} has {len(buckets)} intake buckets and {len(tables)} results tables; "
                          "is it the twin started by `make local`?")
    target.bucket, target.table = buckets[0], tables[0]
    target.outputs = {"IntakeBucketName": target.bucket, "ResultsTableName": target.table,
                      **_twin_outputs(target.client("stepfunctions"), target.client("sqs"))}
    buckets = target.client("s3").list_buckets()["Buckets"]
    ground_truth = [b["Name"] for b in buckets if "-groundtruthbucket-" in b["Name"]]
    if len(ground_truth) == 1:
        target.outputs["GroundTruthBucketName"] = ground_truth[0]
    cognito = target.client("cognito-idp")
    pools = [p["Id"] for p in cognito.list_user_pools(MaxResults=60)["UserPools"]
             if p["Name"].endswith("-users")]  # the template's UserPoolName
    # The front door (PhotoApi); the review page's API is named "<stack>-review" (template.yaml: ReviewApi).
    apis = [a["ApiId"] for a in target.client("apigatewayv2").get_apis()["Items"] if not a["Name"].endswith("-review")]
    if len(pools) == 1 and len(apis) == 1:
        target.outputs.update(UserPoolId=pools[0], ApiId=apis[0], ApiScopePrefix="vehicle-classifier/")
        groups = [g["GroupName"] for g in cognito.list_groups(UserPoolId=pools[0])["Groups"]]
        if "reviewers" in groups:  # the template's GroupName
            target.outputs["ReviewersGroupName"] = "reviewers"
    try:
        written = json.loads(outputs_file.read_text())
    except (OSError, ValueError):
        written = {}
    same_pool = written.get("UserPoolId") == target.outputs.get("UserPoolId")
    if written.get("IntakeBucketName") == target.bucket and same_pool:
        target.outputs = {**written, **target.outputs}
    return target


def _twin_outputs(sfn, sqs) -> dict[str, str]:
    """The twin has no CloudFormation: its state machine and queues are found by their generated names."""
    outputs = {}
    machines = [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]
                if "-ClassifierStateMachine-" in m["name"]]
    if len(machines) == 1:
        outputs["StateMachineArn"] = machines[0]
    for url in sqs.list_queues().get("QueueUrls", []):
        for logical_id in ("ReviewQueue", "ReviewDeadLetterQueue", "RuleDeadLetterQueue", "RecordDeadLetterQueue"):
            if f"-{logical_id}-" in url.rsplit("/", 1)[-1]:
                outputs[f"{logical_id}Url"] = url
    return outputs


def stack(name: str, region: str | None = None, profile: str | None = None) -> Target:
    """A deployed stack, by name: IntakeBucketName and ResultsTableName from its outputs."""
    try:
        session = boto3.session.Session(region_name=region, profile_name=profile)
        if not session.region_name:
            raise TargetError(f"no AWS region configured: {REGION_HINT}, or pass --region")
        described = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    except NoRegionError:
        raise TargetError(f"no AWS region configured: {REGION_HINT}, or pass --region") from None
    except NoCredentialsError:
        raise TargetError("no AWS credentials found: run `aws configure` or `aws sso login`, "
                          "or set AWS_PROFILE") from None
    except ClientError as exc:
        if "does not exist" in str(exc):
            raise TargetError(f"stack {name!r} does not exist in {session.region_name}: deploy it with "
                              f"`make deploy`, or check the region ({REGION_HINT})") from None
        raise TargetError(f"cannot describe stack {name!r}: {exc}") from None
    except BotoCoreError as exc:
        raise TargetError(f"cannot reach CloudFormation: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    missing = [k for k in ("IntakeBucketName", "ResultsTableName") if k not in outputs]
    if missing:
        raise TargetError(f"stack {name!r} has no output {', '.join(missing)}: is it this project's stack?")
    return Target(f"stack {name} in {session.region_name}", outputs["IntakeBucketName"],
                  outputs["ResultsTableName"], session, outputs={**outputs, "StackName": name})
