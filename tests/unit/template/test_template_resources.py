"""What the deployed stack promises, read from the template after the SAM transform (offline).

Intake bucket hardening, function configuration, parameter validation, state machine logging and
tracing, the EventBridge rule's delivery guarantees and the outputs the docs tell users to use.
"""

from __future__ import annotations

import re

import pytest

FUNCTIONS = ("SerializeImageFunction", "ClassifyImageFunction", "FilterInferenceFunction",
             "SubmitPhotoFunction", "PhotoStatusFunction", "ReviewsFunction")


# ------------------------------------------------------------------ intake bucket
def test_intake_bucket_sends_events_to_eventbridge(stack):
    # Without it no upload ever reaches the rule, and nothing is classified.
    props = stack.properties("IntakeBucket")
    assert props["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True


def test_intake_bucket_is_encrypted_and_private(stack):
    props = stack.properties("IntakeBucket")
    rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules and all(r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms", "aws:kms:dsse")
                         for r in rules)
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }


def test_intake_bucket_policy_denies_plain_http(stack):
    policy = stack.properties("IntakeBucketPolicy")
    bucket_arn = stack.get_att("IntakeBucket", "Arn")
    assert policy["Bucket"] == stack.ref("IntakeBucket")
    denials = [s for s in policy["PolicyDocument"]["Statement"]
               if s["Effect"] == "Deny"
               and str(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")).lower() == "false"]
    assert len(denials) == 1, policy
    deny = denials[0]
    assert deny["Principal"] in ("*", {"AWS": "*"})
    assert deny["Action"] in ("s3:*", ["s3:*"])
    # Both the bucket and its objects: object reads over HTTP must be refused too.
    assert {bucket_arn, f"{bucket_arn}/*"} <= set(deny["Resource"])


# ------------------------------------------------------------------ functions
def test_every_function_on_python_313_with_code_and_requirements(stack):
    functions = stack.of_type("AWS::Lambda::Function")
    assert set(functions) == set(FUNCTIONS)
    for lid in FUNCTIONS:
        props = stack.properties(lid)
        assert props["Runtime"] == "python3.13", lid
        module, handler = props["Handler"].rsplit(".", 1)
        folder = stack.code_dirs[lid]
        source = folder / f"{module.replace('.', '/')}.py"
        assert source.is_file(), f"{lid}: handler module {source} missing"
        assert re.search(rf"^def {handler}\(", source.read_text(), flags=re.MULTILINE), f"{lid}: no {handler}()"
        # sam build installs dependencies from here; without it Powertools is missing at run time.
        assert (folder / "requirements.txt").is_file(), f"{lid}: {folder}/requirements.txt missing"
        assert props["TracingConfig"] == {"Mode": "Active"}, lid


def test_every_function_setting_is_read_by_its_code(stack, function_sources):
    """An environment variable no code reads is a setting that silently does nothing."""
    for lid in FUNCTIONS:
        variables = stack.properties(lid)["Environment"]["Variables"]
        # POWERTOOLS_* and LOG_LEVEL (its legacy name for the level) are read by Powertools itself,
        # AWS_ENDPOINT_URL* by botocore.
        ours = {name for name in variables
                if not name.startswith(("POWERTOOLS_", "AWS_ENDPOINT_URL")) and name != "LOG_LEVEL"}
        assert ours, lid
        unread = {name for name in ours if f'"{name}"' not in function_sources[lid]}
        assert not unread, f"{lid} sets {sorted(unread)} but its code never reads them"


def test_the_classify_timeout_covers_its_endpoint_call_as_the_template_says(repo, raw_template):
    """The client's timeouts, the function's Timeout above them, and the template's comment on them agree."""
    code = (repo / "functions" / "classify" / "app.py").read_text()
    connect, read = map(int, re.search(r"CONNECT_TIMEOUT_S, READ_TIMEOUT_S = (\d+), (\d+)", code).groups())
    timeout = raw_template["Resources"]["ClassifyImageFunction"]["Properties"]["Timeout"]
    assert connect + read < timeout
    text = (repo / "template.yaml").read_text()
    block = text[text.index("  ClassifyImageFunction:"):text.index("  FilterInferenceFunction:")]
    stated = re.findall(r"(\d+) s (connect|read)", block)
    assert sorted(stated) == sorted([(str(connect), "connect"), (str(read), "read")]), stated


def test_parameters_reach_the_functions(stack, defaults):
    classify_environment = stack.properties("ClassifyImageFunction")["Environment"]["Variables"]
    assert classify_environment["ENDPOINT_NAME"] == "my-endpoint"
    assert classify_environment["CLASS_NAMES"] == defaults["ClassNames"]
    threshold = stack.properties("FilterInferenceFunction")["Environment"]["Variables"]["THRESHOLD"]
    assert float(threshold) == float(defaults["ConfidenceThreshold"])


# ------------------------------------------------------------------ parameters
@pytest.mark.parametrize("name", ["my-endpoint", "bikes", "vehicle-classifier-2024-06-01", "a", "a" * 63, "a--b"])
def test_endpoint_name_accepts_sagemaker_names_in_lower_case(raw_template, name):
    assert re.fullmatch(raw_template["Parameters"]["EndpointName"]["AllowedPattern"], name)


@pytest.mark.parametrize("name", ["My-Endpoint", "ENDPOINT", "my_endpoint", "", "-endpoint", "endpoint-", "a" * 64,
                                  "my endpoint", "arn:aws:sagemaker:us-east-1:123456789012:endpoint/x"])
def test_endpoint_name_rejects_upper_case_and_invalid_names(raw_template, name):
    # IAM compares the endpoint ARN case-sensitively and SageMaker lower-cases it: upper case
    # would deploy fine and then be denied on every invocation.
    assert not re.fullmatch(raw_template["Parameters"]["EndpointName"]["AllowedPattern"], name)


def test_endpoint_name_has_no_default(raw_template):
    # A made-up default would deploy a stack that fails every image; CloudFormation must ask.
    assert "Default" not in raw_template["Parameters"]["EndpointName"]


def test_confidence_threshold_is_a_probability(raw_template):
    param = raw_template["Parameters"]["ConfidenceThreshold"]
    assert param["Type"] == "Number"
    assert (float(param["MinValue"]), float(param["MaxValue"])) == (0.0, 1.0)
    assert 0 <= float(param["Default"]) <= 1


# ------------------------------------------------------------------ state machine and rule
def test_state_machine_logs_without_payloads_and_traces(stack):
    props = stack.properties("ClassifierStateMachine")
    logging = props["LoggingConfiguration"]
    # Express workflows keep no execution history: the log is the only record of each step.
    assert logging["Level"] == "ALL"
    # The state carries the whole image in base64: never into the logs (cost, privacy).
    assert logging["IncludeExecutionData"] is False
    assert logging["Destinations"] == [
        {"CloudWatchLogsLogGroup": {"LogGroupArn": stack.get_att("StateMachineLogGroup", "Arn")}}]
    assert props["TracingConfiguration"] == {"Enabled": True}


def _upload_rule(stack):
    rules = stack.of_type("AWS::Events::Rule")
    assert len(rules) == 1, f"expected one EventBridge rule, found {sorted(rules)}"
    (lid,) = rules
    return lid, stack.properties(lid)


def test_rule_starts_the_state_machine_from_the_default_bus(stack):
    _, rule = _upload_rule(stack)
    # S3 publishes to the default bus only.
    assert rule.get("EventBusName", "default") == "default"
    assert rule.get("State", "ENABLED") == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == stack.ref("ClassifierStateMachine")


def test_rule_retries_and_keeps_undeliverable_uploads(stack):
    _, rule = _upload_rule(stack)
    (target,) = rule["Targets"]
    retry = target["RetryPolicy"]
    assert retry["MaximumRetryAttempts"] > 0
    assert 60 <= retry["MaximumEventAgeInSeconds"] <= 86400
    dlq_arn = stack.get_att("RuleDeadLetterQueue", "Arn")
    assert target["DeadLetterConfig"] == {"Arn": dlq_arn}
    # EventBridge can only park an event there if the queue policy lets it send.
    policy = stack.properties("RuleDeadLetterQueuePolicy")
    assert stack.ref("RuleDeadLetterQueue") in policy["Queues"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] in ("sqs:SendMessage", ["sqs:SendMessage"])
    assert statement["Resource"] in (dlq_arn, [dlq_arn])
    # ... and only for this rule: no other rule of the account may fill it.
    rule_lid, _ = _upload_rule(stack)
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": stack.get_att(rule_lid, "Arn")}}


# ------------------------------------------------------------------ what outlives the stack
@pytest.mark.parametrize("logical_id", ["ResultsTable", "GroundTruthBucket"])
def test_peoples_decisions_outlive_the_stack(raw_template, logical_id):
    """The results table holds the reviewers' decisions, the ground-truth bucket their labels: `sam delete` and a
    replacement keep both (CloudFormation deletes a table whose DeletionPolicy is not Retain)."""
    resource = raw_template["Resources"][logical_id]
    assert resource.get("DeletionPolicy") == "Retain" and resource.get("UpdateReplacePolicy") == "Retain"


# ------------------------------------------------------------------ outputs
@pytest.mark.parametrize(("output", "resource"), [
    ("IntakeBucketName", "IntakeBucket"),
    ("ResultsTableName", "ResultsTable"),
    ("ReviewQueueUrl", "ReviewQueue"),
    ("StateMachineArn", "ClassifierStateMachine"),
])
def test_outputs_name_the_resources_users_work_with(stack, output, resource):
    assert output in stack.outputs, f"output {output} missing"
    assert stack.resolve(stack.outputs[output]["Value"]) == stack.ref(resource)


def test_every_function_logs_to_a_group_kept_for_the_retention_parameter(load_stack):
    stack = load_stack(LogRetentionDays="7")
    retention = {lid: stack.properties(lid)["RetentionInDays"] for lid in stack.of_type("AWS::Logs::LogGroup")}
    assert set(retention.values()) == {"7"}, retention  # the API's access logs too
    groups = {stack.properties(lid)["LogGroupName"]: retention[lid]
              for lid in stack.of_type("AWS::Logs::LogGroup") if "LogGroupName" in stack.properties(lid)}
    for lid in stack.of_type("AWS::Lambda::Function"):
        # Lambda writes to /aws/lambda/<function name>; a group the stack owns there is the one it uses.
        assert groups.get(f"/aws/lambda/{stack.ref(lid)}") == "7", lid
