"""Least privilege: the IAM roles the SAM transform generates grant what the workflow needs, nothing more."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase

from local.template import state_machine_definition

ACCOUNT = "123456789012"
# What SAM attaches for a function with Tracing: Active. Logging and X-Ray writes only.
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
FUNCTION_MANAGED = {BASIC_EXECUTION, "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"}


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _role(stack, logical_id_of, resource: str, role_property: str):
    role_lid = logical_id_of(stack.resources[resource]["Properties"][role_property])
    assert stack.resources[role_lid]["Type"] == "AWS::IAM::Role"
    return stack.properties(role_lid)


def _statements(role) -> list[tuple[str, list[str], list[str]]]:
    """(effect, actions, resources) of every inline statement."""
    found = []
    for policy in role.get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            assert "NotAction" not in statement and "NotResource" not in statement, statement
            found.append((statement["Effect"], _as_list(statement["Action"]), _as_list(statement["Resource"])))
    return found


def _function_role(stack, logical_id_of, function: str):
    role = _role(stack, logical_id_of, function, "Role")
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": ["lambda.amazonaws.com"]}
    managed = set(role.get("ManagedPolicyArns", []))
    assert BASIC_EXECUTION in managed, f"{function} cannot write its logs"
    assert managed <= FUNCTION_MANAGED, f"{function} has extra managed policies: {managed - FUNCTION_MANAGED}"
    return _statements(role)


def test_serialize_may_only_read_intake_objects_and_tell_missing_from_forbidden(stack, logical_id_of):
    statements = _function_role(stack, logical_id_of, "SerializeImageFunction")
    bucket_arn = stack.get_att("IntakeBucket", "Arn")
    # ListBucket on the bucket itself: without it S3 answers a missing key with 403, not 404.
    assert statements == [("Allow", ["s3:GetObject"], [f"{bucket_arn}/*"]),
                          ("Allow", ["s3:ListBucket"], [bucket_arn])]


def test_cloudwatch_may_use_the_alarm_topics_key_and_only_for_this_accounts_alarms(stack):
    topic = stack.properties("AlarmTopic")
    [(key_id, key)] = stack.of_type("AWS::KMS::Key").items()
    assert topic["KmsMasterKeyId"] == stack.ref(key_id)  # not the AWS-managed alias/aws/sns
    props = stack.properties(key_id)
    assert props["EnableKeyRotation"] is True
    grants = [s for s in props["KeyPolicy"]["Statement"]
              if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert len(grants) == 1
    grant = grants[0]
    assert grant["Effect"] == "Allow" and sorted(grant["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert grant["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:*"}}


def test_classify_may_only_invoke_the_configured_endpoint(stack, logical_id_of):
    statements = _function_role(stack, logical_id_of, "ClassifyImageFunction")
    assert statements == [
        ("Allow", ["sagemaker:InvokeEndpoint"], [f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/my-endpoint"])]


def test_filter_has_nothing_beyond_logs_and_tracing(stack, logical_id_of):
    assert _function_role(stack, logical_id_of, "FilterInferenceFunction") == []


# ------------------------------------------------------------------ state machine
# Vended-log delivery and X-Ray take no resource-level permissions (AWS docs), so only these may use "*".
RESOURCELESS = {
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
}


def _task_permissions(stack) -> set[tuple[str, str]]:
    """(IAM action, resource ARN) each Task state of the deployed definition calls."""
    definition = json.loads(state_machine_definition(stack, "ClassifierStateMachine"))
    prefix = f"arn:aws:%s:{stack.region}:{ACCOUNT}:"
    needed = set()
    for name, state in definition["States"].items():
        if state["Type"] != "Task":
            continue
        params = state["Parameters"]
        integration = state["Resource"].removeprefix("arn:aws:states:::")
        if integration == "lambda:invoke":
            needed.add(("lambda:InvokeFunction", params["FunctionName"]))
        elif integration == "dynamodb:putItem":
            needed.add(("dynamodb:PutItem", prefix % "dynamodb" + f"table/{params['TableName']}"))
        elif integration == "sqs:sendMessage":
            needed.add(("sqs:SendMessage", prefix % "sqs" + params["QueueUrl"].rsplit("/", 1)[1]))
        elif integration == "events:putEvents":
            for entry in params["Entries"]:
                needed.add(("events:PutEvents", prefix % "events" + f"event-bus/{entry['EventBusName']}"))
        else:
            raise AssertionError(f"{name}: this test does not know the permissions of {state['Resource']}")
    return needed


def _grants(statements, action: str, resource: str) -> bool:
    return any(effect == "Allow" and any(fnmatchcase(action, a) for a in actions)
               and any(fnmatchcase(resource, r) for r in resources)
               for effect, actions, resources in statements)


def test_state_machine_role_covers_every_task(stack, logical_id_of):
    role = _role(stack, logical_id_of, "ClassifierStateMachine", "RoleArn")
    statements = _statements(role)
    needed = _task_permissions(stack)
    functions = {stack.get_att(f, "Arn") for f in
                 ("SerializeImageFunction", "ClassifyImageFunction", "FilterInferenceFunction")}
    # Guard against a definition this test misreads: the five integrations must all be there.
    assert {r for a, r in needed if a == "lambda:InvokeFunction"} == functions
    assert {a for a, _ in needed} == {"lambda:InvokeFunction", "dynamodb:PutItem", "sqs:SendMessage",
                                      "events:PutEvents"}
    missing = sorted(p for p in needed if not _grants(statements, *p))
    assert not missing, f"the state machine would be denied: {missing}"


# SAM's DynamoDBWritePolicy bundles these with PutItem, on the results table only: tolerated.
SAM_WRITE_SIBLINGS = {"dynamodb:UpdateItem", "dynamodb:BatchWriteItem"}


def test_state_machine_role_grants_nothing_the_tasks_do_not_use(stack, logical_id_of):
    role = _role(stack, logical_id_of, "ClassifierStateMachine", "RoleArn")
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": ["states.amazonaws.com"]}
    assert set(role.get("ManagedPolicyArns", [])) <= {"arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"}
    needed = _task_permissions(stack)
    table_arn = stack.get_att("ResultsTable", "Arn")
    for effect, actions, resources in _statements(role):
        assert effect == "Allow"
        if resources == ["*"]:
            assert set(actions) <= RESOURCELESS, f"unscoped actions: {set(actions) - RESOURCELESS}"
            continue
        for resource in resources:
            if resource == f"{table_arn}/index/*":  # SAM adds the table's indexes; it has none
                continue
            # SAM's Lambda policy ends in "*" (versions and aliases of the same function).
            uses = {a for a, r in needed if r == resource.rstrip("*")}
            assert uses, f"{resource} is granted but no task uses it"
            for action in actions:
                assert any(fnmatchcase(u, action) for u in uses) or (
                    action in SAM_WRITE_SIBLINGS and resource == table_arn), \
                    f"{action} on {resource} is granted but no task needs it (tasks need {sorted(uses)})"


def test_rule_role_may_only_start_this_state_machine(stack, logical_id_of):
    rule_lid = next(iter(stack.of_type("AWS::Events::Rule")))
    (target,) = stack.resources[rule_lid]["Properties"]["Targets"]
    role = stack.properties(logical_id_of(target["RoleArn"]))
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": ["events.amazonaws.com"]}
    assert not role.get("ManagedPolicyArns")
    assert _statements(role) == [("Allow", ["states:StartExecution"], [stack.ref("ClassifierStateMachine")])]


# The AWS API calls the review page makes (client method -> IAM action), read from its code below.
REVIEW_ACTIONS = {
    "receive_message": "sqs:ReceiveMessage", "change_message_visibility_batch": "sqs:ChangeMessageVisibility",
    "delete_message": "sqs:DeleteMessage", "get_queue_attributes": "sqs:GetQueueAttributes",
    "get_item": "dynamodb:GetItem", "update_item": "dynamodb:UpdateItem", "get_object": "s3:GetObject",
    "put_object": "s3:PutObject", "put_events": "events:PutEvents", "put_metric_data": "cloudwatch:PutMetricData",
    "describe_stacks": "cloudformation:DescribeStacks", "send_message": "sqs:SendMessage", "scan": "dynamodb:Scan",
}
CLIENT_NAMES = {"_sqs", "_dynamodb", "_s3", "_events", "_cloudwatch", "s3", "sqs"}


def _review_page_calls(repo) -> set[str]:
    """Client methods called by the page's modules and by requeue, which the README and the review dead-letter
    alarm give reviewers (not read_manifest's: a training tool, run with the operator's own permissions)."""
    import ast

    calls = set()
    for name in ("waiting.py", "decisions.py", "ground_truth.py", "page.py", "requeue.py"):
        tree = ast.parse((repo / "review" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "read_manifest":
                node.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if owner_name in CLIENT_NAMES:
                    calls.add(node.func.attr)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "scan_results":
                calls.add("scan")  # client.results.scan_results pages through a Scan
    return calls | {"describe_stacks"}  # client.target.stack finds the stack's outputs


def test_reviewer_policy_grants_exactly_what_the_review_page_calls(stack, repo):
    calls = _review_page_calls(repo)
    assert calls <= set(REVIEW_ACTIONS), f"review page calls unmapped APIs: {calls - set(REVIEW_ACTIONS)}"
    policy = stack.properties("ReviewerPolicy")["PolicyDocument"]["Statement"]
    granted = {action for statement in policy for action in _as_list(statement["Action"])}
    assert all(statement["Effect"] == "Allow" for statement in policy)
    # ListBucket: a deleted image answers 404, not 403.
    assert granted == {REVIEW_ACTIONS[c] for c in calls} | {"s3:ListBucket"}
    by_action = {action: statement for statement in policy for action in _as_list(statement["Action"])}
    assert by_action["sqs:DeleteMessage"]["Resource"] == stack.get_att("ReviewQueue", "Arn")
    assert by_action["sqs:SendMessage"]["Resource"] == stack.get_att("ReviewQueue", "Arn")
    assert by_action["dynamodb:UpdateItem"]["Resource"] == stack.get_att("ResultsTable", "Arn")
    assert by_action["dynamodb:Scan"]["Resource"] == stack.get_att("ResultsTable", "Arn")
    assert by_action["s3:GetObject"]["Resource"] == f"{stack.get_att('IntakeBucket', 'Arn')}/*"
    assert by_action["s3:PutObject"]["Resource"] == f"{stack.get_att('GroundTruthBucket', 'Arn')}/*"
    assert by_action["cloudformation:DescribeStacks"]["Resource"] == stack.resolve({"Ref": "AWS::StackId"})
    assert by_action["cloudwatch:PutMetricData"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "SconesUnlimited/VehicleClassifier"}}
    assert "ReviewerPolicyArn" in stack.outputs
