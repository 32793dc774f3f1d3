"""The twin's functions act with their own roles from the template, and moto holds them to their policies."""

from __future__ import annotations

import json

import pytest

from twin_helpers import put, queue_messages, sample, wait_for, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def serialize_role(twin) -> str:
    roles = twin.client("iam").list_roles()["Roles"]
    (name,) = [r["RoleName"] for r in roles if "SerializeImageFunctionRole" in r["RoleName"]]
    return name


def test_each_function_runs_with_temporary_credentials_of_its_own_role(twin):
    functions = twin.deployment.functions
    assert set(functions) == {"SerializeImageFunction", "ClassifyImageFunction", "FilterInferenceFunction",
                              "SubmitPhotoFunction", "PhotoStatusFunction", "ReviewsFunction"}
    for logical_id, function in functions.items():
        assert function.credentials["AWS_ACCESS_KEY_ID"].startswith("ASIA"), logical_id
    keys = {f["AWS_ACCESS_KEY_ID"] for f in (fn.credentials for fn in functions.values())}
    assert len(keys) == len(functions)  # one role each, no shared identity
    # The role as the template grants it: read the intake bucket's objects, list the bucket, nothing else.
    iam = twin.client("iam")
    (policy_name,) = iam.list_role_policies(RoleName=serialize_role(twin))["PolicyNames"]
    policy = iam.get_role_policy(RoleName=serialize_role(twin), PolicyName=policy_name)
    statements = policy["PolicyDocument"]["Statement"]
    assert {s["Action"] for s in statements} == {"s3:GetObject", "s3:ListBucket"}


def test_removing_a_needed_permission_fails_the_flow_and_restoring_it_heals_it(twin):
    def upload(key: str) -> None:
        put(twin, key, sample("motorcycle").read_bytes())

    upload("iam/before.png")
    assert wait_for(twin, {"iam/before.png"})["iam/before.png"]["outcome"] in ("classified", "needs_review")

    iam, role = twin.client("iam"), serialize_role(twin)
    (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    granted = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
    without_read = {**granted, "Statement": [s for s in granted["Statement"] if s["Action"] != "s3:GetObject"]}
    iam.put_role_policy(RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(without_read))
    try:
        upload("iam/denied.png")
        record = wait_for(twin, {"iam/denied.png"})["iam/denied.png"]
        assert (record["outcome"], record["reason"]) == ("failed", "ImageAccessDeniedError")
        assert "s3:GetObject" in json.loads(record["error_detail"])["errorMessage"]
    finally:
        iam.put_role_policy(RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(granted))

    from client.__main__ import main

    assert main(["redrive", "--port", str(twin.settings.port)]) == 0  # once fixed, the re-drive heals it
    def recorded_again():
        record = wait_for(twin, {"iam/denied.png"})["iam/denied.png"]
        return record["outcome"] != "failed" and record

    healed = wait_until(recorded_again)
    assert healed["outcome"] in ("classified", "needs_review")


def machine_role(twin) -> str:
    (name,) = [r["RoleName"] for r in twin.client("iam").list_roles()["Roles"]
               if r["RoleName"].split("-")[-2] == "ClassifierStateMachineRole"]
    return name


def policy_granting(twin, role: str, action: str, resource: str = "") -> tuple[str, dict]:
    """The inline policy of ``role`` that grants ``action`` (on a resource starting with ``resource``)."""
    iam = twin.client("iam")
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        for statement in document["Statement"]:
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            if action in actions and str(statement["Resource"]).startswith(resource):
                return name, document
    raise AssertionError(f"{role} grants no {action}")


def test_the_state_machine_acts_with_its_role(twin):
    """Without dynamodb:PutItem the outcome cannot be written: it goes to the record dead-letter queue; without
    lambda:InvokeFunction serialize never runs and the failure names the refusal."""
    iam, role = twin.client("iam"), machine_role(twin)
    def upload(key: str) -> None:
        put(twin, key, sample("bicycle", 1).read_bytes())


    table_policy, table_document = policy_granting(twin, role, "dynamodb:PutItem")
    iam.delete_role_policy(RoleName=role, PolicyName=table_policy)
    try:
        upload("iam/unwritten.png")
        (letter,) = [m["body"] for m in queue_messages(twin, "RecordDeadLetterQueueUrl", 1)]
        assert letter["error"]["Error"] == "DynamoDB.AccessDeniedException"
        assert letter["execution_input"]["detail"]["object"]["key"] == "iam/unwritten.png"
    finally:
        iam.put_role_policy(RoleName=role, PolicyName=table_policy, PolicyDocument=json.dumps(table_document))

    serialize_arn = twin.deployment.functions["SerializeImageFunction"].arn
    invoke_policy, invoke_document = policy_granting(twin, role, "lambda:InvokeFunction", resource=serialize_arn)
    iam.delete_role_policy(RoleName=role, PolicyName=invoke_policy)
    try:
        upload("iam/uninvoked.png")
        record = wait_for(twin, {"iam/uninvoked.png"})["iam/uninvoked.png"]
        assert (record["outcome"], record["reason"]) == ("failed", "Lambda.AccessDeniedException")
    finally:
        iam.put_role_policy(RoleName=role, PolicyName=invoke_policy, PolicyDocument=json.dumps(invoke_document))
    upload("iam/restored.png")
    assert wait_for(twin, {"iam/restored.png"})["iam/restored.png"]["outcome"] in ("classified", "needs_review")


def test_a_missing_key_is_not_found_only_for_a_role_that_may_list_the_bucket(twin):
    """S3's rule: without s3:ListBucket a read of a missing key is refused (403), not 'not found' (404)."""
    import boto3
    from botocore.exceptions import ClientError

    credentials = twin.deployment.functions["SerializeImageFunction"].credentials
    as_serialize = boto3.client("s3", endpoint_url=twin.url, region_name="us-east-1",
                                aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                                aws_session_token=credentials["AWS_SESSION_TOKEN"])
    bucket = twin.outputs["IntakeBucketName"]

    def code_of_missing_read() -> str:
        with pytest.raises(ClientError) as refused:
            as_serialize.get_object(Bucket=bucket, Key="iam/never-uploaded.png")
        return refused.value.response["Error"]["Code"]

    assert code_of_missing_read() == "NoSuchKey"  # the template grants s3:ListBucket
    iam, role = twin.client("iam"), serialize_role(twin)
    policy_name, granted = policy_granting(twin, role, "s3:ListBucket")
    without_list = {**granted, "Statement": [s for s in granted["Statement"] if s["Action"] != "s3:ListBucket"]}
    iam.put_role_policy(RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(without_list))
    try:
        assert code_of_missing_read() == "AccessDenied"
    finally:
        iam.put_role_policy(RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(granted))


def test_uploads_start_executions_with_the_rules_role(twin):
    """Without states:StartExecution on its target role, EventBridge cannot start the workflow: the event waits in
    the rule's dead-letter queue (not retried, as EventBridge does not retry a refusal) until a re-drive."""
    iam = twin.client("iam")
    (role,) = [r["RoleName"] for r in iam.list_roles()["Roles"] if "ImageUploadedRole" in r["RoleName"]]
    policy_name, granted = policy_granting(twin, role, "states:StartExecution")
    iam.delete_role_policy(RoleName=role, PolicyName=policy_name)
    try:
        put(twin, "iam/unstarted.png", sample("bicycle", 2).read_bytes())
        # left in the queue, for the re-drive below
        (message,) = queue_messages(twin, "RuleDeadLetterQueueUrl", 1, timeout=30, take=False)
        assert message["body"]["detail"]["object"]["key"] == "iam/unstarted.png"
        assert "AccessDenied" in message["MessageAttributes"]["ERROR_MESSAGE"]["StringValue"]
    finally:
        iam.put_role_policy(RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(granted))

    from client.__main__ import main

    assert main(["redrive", "--port", str(twin.settings.port)]) == 0
    assert wait_for(twin, {"iam/unstarted.png"})["iam/unstarted.png"]["outcome"] in ("classified", "needs_review")


def test_an_operations_lead_with_the_review_operations_policy_can_requeue_and_no_more(twin):
    """`make requeue` (python -m review requeue), which the README and the review dead-letter alarm point to, run
    with the credentials of a role holding only the stack's ReviewOperationsPolicy, as an operations lead's would be."""
    import boto3
    from botocore.exceptions import ClientError

    from review.requeue import requeue

    iam = twin.client("iam")
    document = twin.deployment.stack.properties("ReviewOperationsPolicy")["PolicyDocument"]
    policy = iam.create_policy(PolicyName="review-operations", PolicyDocument=json.dumps(document))["Policy"]["Arn"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}
    role = iam.create_role(RoleName="review-operations", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.attach_role_policy(RoleName="review-operations", PolicyArn=policy)
    credentials = twin.client("sts").assume_role(RoleArn=role, RoleSessionName="ana")["Credentials"]
    def as_reviewer(service: str):
        return boto3.client(
            service, endpoint_url=twin.url, region_name="us-east-1", aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"], aws_session_token=credentials["SessionToken"])

    key = "iam/waiting-for-a-person.png"
    put(twin, key, sample("bicycle", 0).read_bytes())  # the model says 0.85: sent to review
    assert wait_for(twin, {key})[key]["outcome"] == "needs_review"
    table, queue = twin.outputs["ResultsTableName"], twin.outputs["ReviewQueueUrl"]
    assert requeue(as_reviewer("dynamodb"), as_reviewer("sqs"), table, queue) >= 1
    again = [m for m in queue_messages(twin, "ReviewQueueUrl", 100, timeout=5, take=False) if m["body"]["key"] == key]
    assert len({m["MessageId"] for m in again}) == 2  # the state machine's message and requeue's

    # The policy grants what requeue and onboarding need on their own resources, nothing else: no decisions.
    with pytest.raises(ClientError) as refused:
        as_reviewer("dynamodb").delete_item(TableName=table, Key={"bucket": {"S": twin.outputs["IntakeBucketName"]},
                                                                   "key": {"S": key}})
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as refused:  # decisions are the review page's, under a reviewer's own name
        as_reviewer("dynamodb").update_item(
            TableName=table, Key={"bucket": {"S": twin.outputs["IntakeBucketName"]}, "key": {"S": key}},
            UpdateExpression="SET reviewer = :r", ExpressionAttributeValues={":r": {"S": "forged"}})
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as refused:
        as_reviewer("sqs").send_message(QueueUrl=twin.outputs["RecordDeadLetterQueueUrl"], MessageBody="{}")
    assert "AccessDenied" in refused.value.response["Error"]["Code"]
