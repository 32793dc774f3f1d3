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


# The AWS API calls the review function and the review operations make (client method -> IAM action), read from
# their code below.
REVIEW_ACTIONS = {
    "receive_message": "sqs:ReceiveMessage", "change_message_visibility": "sqs:ChangeMessageVisibility",
    "delete_message": "sqs:DeleteMessage", "get_queue_attributes": "sqs:GetQueueAttributes",
    "get_item": "dynamodb:GetItem", "update_item": "dynamodb:UpdateItem", "query": "dynamodb:Query",
    "put_item": "dynamodb:PutItem", "delete_item": "dynamodb:DeleteItem", "get_object": "s3:GetObject",
    "put_object": "s3:PutObject", "put_events": "events:PutEvents",
    "describe_stacks": "cloudformation:DescribeStacks", "send_message": "sqs:SendMessage", "scan": "dynamodb:Scan",
    "admin_create_user": "cognito-idp:AdminCreateUser", "admin_add_user_to_group": "cognito-idp:AdminAddUserToGroup",
    "admin_remove_user_from_group": "cognito-idp:AdminRemoveUserFromGroup",
    "admin_user_global_sign_out": "cognito-idp:AdminUserGlobalSignOut",
    "admin_delete_user": "cognito-idp:AdminDeleteUser",
}
CLIENT_NAMES = {"_sqs", "_dynamodb", "_s3", "_events", "s3", "sqs", "cognito"}


def _calls(files) -> set[str]:
    """Client methods called in ``files`` (generate_presigned_url signs locally: a call of no API)."""
    import ast

    calls = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if owner_name in CLIENT_NAMES and node.func.attr != "generate_presigned_url":
                    calls.add(node.func.attr)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "scan_results":
                calls.add("scan")  # contracts.results.scan_results pages through a Scan
    return calls


def _granted(statements: list[tuple[str, list[str], list[str]]]) -> dict[str, list]:
    by_action: dict[str, list] = {}
    for effect, actions, resources in statements:
        assert effect == "Allow"
        for action in actions:
            by_action.setdefault(action, []).extend(resources)
    return by_action


def test_the_review_functions_role_grants_exactly_what_it_calls(stack, logical_id_of, repo):
    calls = _calls(sorted((repo / "functions" / "reviews").glob("*.py")))
    assert calls <= set(REVIEW_ACTIONS), f"the review function calls unmapped APIs: {calls - set(REVIEW_ACTIONS)}"
    granted = _granted(_function_role(stack, logical_id_of, "ReviewsFunction"))
    # ListBucket: a deleted photo answers 404, not 403; a preview URL carries the role's GetObject.
    assert set(granted) == {REVIEW_ACTIONS[c] for c in calls} | {"s3:ListBucket"}
    intake, previews = stack.get_att("IntakeBucket", "Arn"), stack.get_att("ReviewPreviewsBucket", "Arn")
    assert sorted(granted["s3:GetObject"]) == sorted([f"{intake}/*", f"{previews}/*"])
    assert sorted(granted["s3:PutObject"]) == sorted([f"{previews}/*",
                                                      f"{stack.get_att('GroundTruthBucket', 'Arn')}/*"])
    assert granted["sqs:DeleteMessage"] == [stack.get_att("ReviewQueue", "Arn")]
    assert granted["dynamodb:UpdateItem"] == [stack.get_att("ResultsTable", "Arn")]
    assert granted["dynamodb:PutItem"] == granted["dynamodb:DeleteItem"] == granted["dynamodb:Query"] == \
        [stack.get_att("ReviewLeasesTable", "Arn")]
    assert "sqs:SendMessage" not in granted and "dynamodb:Scan" not in granted


def test_the_review_operations_policy_grants_exactly_what_requeue_and_onboarding_call(stack, repo):
    calls = _calls([repo / "review" / "requeue.py", repo / "review" / "reviewers.py"]) | {"describe_stacks"}
    assert calls <= set(REVIEW_ACTIONS), f"review operations call unmapped APIs: {calls - set(REVIEW_ACTIONS)}"
    granted = _granted([(st["Effect"], _as_list(st["Action"]), _as_list(st["Resource"]))
                        for st in stack.properties("ReviewOperationsPolicy")["PolicyDocument"]["Statement"]])
    assert set(granted) == {REVIEW_ACTIONS[c] for c in calls}
    assert granted["sqs:SendMessage"] == [stack.get_att("ReviewQueue", "Arn")]
    assert granted["dynamodb:Scan"] == [stack.get_att("ResultsTable", "Arn")]
    assert granted["cloudformation:DescribeStacks"] == [stack.resolve({"Ref": "AWS::StackId"})]
    for action in granted:
        if action.startswith("cognito-idp:"):
            assert granted[action] == [stack.get_att("UserPool", "Arn")], action
    assert "ReviewOperationsPolicyArn" in stack.outputs
