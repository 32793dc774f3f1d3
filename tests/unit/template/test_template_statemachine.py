"""The state machine definition and template.yaml agree: substitutions, and the error names it routes on."""

from __future__ import annotations

import json
import re

import pytest

PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


@pytest.fixture(scope="module")
def machine(raw_template, repo):
    """(raw properties, definition text, parsed definition) of the one Serverless state machine."""
    machines = {lid: r for lid, r in raw_template["Resources"].items() if r["Type"] == "AWS::Serverless::StateMachine"}
    assert len(machines) == 1, sorted(machines)
    (props,) = (r["Properties"] for r in machines.values())
    text = (repo / props["DefinitionUri"]).read_text()
    return props, text, json.loads(text)


def test_every_placeholder_has_a_substitution(machine):
    # An unknown ${Name} reaches Step Functions verbatim: a task would call a function named "${Name}".
    props, text, _ = machine
    missing = set(PLACEHOLDER.findall(text)) - set(props["DefinitionSubstitutions"])
    assert not missing, f"no DefinitionSubstitutions entry for {sorted(missing)}"


def test_every_substitution_is_used(machine):
    props, text, _ = machine
    used = set(PLACEHOLDER.findall(text))
    assert used, "the definition uses no substitutions: the functions' ARNs cannot be in it"
    unused = set(props["DefinitionSubstitutions"]) - used
    assert not unused, f"DefinitionSubstitutions {sorted(unused)} are used nowhere in the definition"


def test_the_definition_takes_the_stacks_partition(machine, raw_template, repo):
    """No literal "arn:aws:" in the definition: in aws-cn or aws-us-gov every task's integration ARN and every
    ARN substituted into it are in that partition, as CloudFormation deploys the stack there."""
    props, text, definition = machine
    assert "arn:aws" not in text
    integrations = {state["Resource"] for state in definition["States"].values() if state["Type"] == "Task"}
    for placeholder in integrations:
        (name,) = PLACEHOLDER.fullmatch(placeholder).groups()
        assert props["DefinitionSubstitutions"][name]["Fn::Sub"].startswith("arn:${AWS::Partition}:states:::"), name
    from local.template import Stack, state_machine_definition

    china = Stack.load(repo / "template.yaml", name="test-stack", region="cn-north-1", partition="aws-cn",
                       parameters={"EndpointName": "my-endpoint"})
    definition = json.loads(state_machine_definition(china, "ClassifierStateMachine"))
    tasks = {name: state for name, state in definition["States"].items() if state["Type"] == "Task"}
    assert tasks and all(state["Resource"].startswith("arn:aws-cn:states:::") for state in tasks.values())
    functions = {state["Parameters"]["FunctionName"] for state in tasks.values()
                 if "FunctionName" in state["Parameters"]}
    assert functions and all(arn.startswith("arn:aws-cn:lambda:cn-north-1:") for arn in functions)


def _lambda_tasks(definition):
    for name, state in definition["States"].items():
        if state["Type"] == "Task" and state["Resource"] == "${LambdaInvoke}":
            yield name, state


def test_lambda_tasks_call_the_template_functions(machine, raw_template, logical_id_of):
    props, _, definition = machine
    called = set()
    for name, state in _lambda_tasks(definition):
        (placeholder,) = PLACEHOLDER.fullmatch(state["Parameters"]["FunctionName"]).groups()
        target = logical_id_of(props["DefinitionSubstitutions"][placeholder])
        assert raw_template["Resources"][target]["Type"] == "AWS::Serverless::Function", name
        called.add(target)
    # Every function but the HTTP API's (functions/photos, functions/reviews), which API Gateway invokes.
    integrated = {logical_id_of(r["Properties"]["IntegrationUri"]) for r in raw_template["Resources"].values()
                  if r["Type"] == "AWS::ApiGatewayV2::Integration"}
    functions = {lid for lid, r in raw_template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
                 and not any(e["Type"] == "HttpApi" for e in r["Properties"].get("Events", {}).values())
                 and lid not in integrated}
    assert called == functions


def test_named_errors_are_exceptions_the_called_function_defines(machine, raw_template, repo, logical_id_of,
                                                                   classes_defined):
    """Step Functions matches Retry/Catch on the Python exception's class name: a rename must fail here."""
    props, _, definition = machine
    checked = set()
    for name, state in _lambda_tasks(definition):
        (placeholder,) = PLACEHOLDER.fullmatch(state["Parameters"]["FunctionName"]).groups()
        function = logical_id_of(props["DefinitionSubstitutions"][placeholder])
        code = repo / raw_template["Resources"][function]["Properties"]["CodeUri"]
        defined = classes_defined("\n".join(p.read_text() for p in code.glob("*.py")))
        for rule in state.get("Retry", []) + state.get("Catch", []):
            # "States.ALL", "Lambda.ServiceException"...: Step Functions' and Lambda's own errors.
            ours = [e for e in rule["ErrorEquals"] if "." not in e]
            unknown = [e for e in ours if e not in defined]
            assert not unknown, f"{name} routes on {unknown}, but {code.name}/ defines no such exception"
            checked.update(ours)
    assert {"EndpointThrottledError", "ModelNotReadyError", "EndpointUnavailableError",
            "LowConfidenceError"} <= checked, f"expected the workflow to route on these; it routes on {checked}"


def test_every_failing_task_ends_in_a_failed_record(machine):
    """The definition's promise: an upload never vanishes; each failure leaves a "failed" item in the table."""
    _, _, definition = machine
    states = definition["States"]
    record = "${DynamoDBPutItem}"
    for name, state in states.items():
        if state["Type"] != "Task" or state["Resource"] == record or name == "SendToRecordDeadLetter":
            continue
        catch_all = [c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
        assert catch_all, f"{name} has no States.ALL catch"
        if name == "SendToAudit":
            # The image is recorded and dispatched before it is sampled: a failure costs one audit sample.
            assert catch_all[0]["Next"] == "Classified" and "RecordClassified" in _predecessors(states, name)
            continue
        for catch in state["Catch"]:
            if catch["ErrorEquals"] == ["LowConfidenceError"]:
                continue  # not a failure: the image is recorded as needs_review, then sent to review
            # Naming the error and decoding the key come before the record; each way ends in a failed one.
            for target in _records_reached(states, catch["Next"]):
                assert target.get("Resource") == record, f"{name}: errors go to {catch['Next']}, not a record"
                assert target["Parameters"]["Item"]["outcome"] == {"S": "failed"}, name


def _records_reached(states: dict, name: str) -> list[dict]:
    """The first Task (or Fail) on every way out of ``name`` through naming Passes, the key Choice and DecodeKey."""
    state = states[name]
    if state["Type"] == "Pass" and name.startswith("Name"):
        return _records_reached(states, state["Next"])
    if state["Type"] == "Choice":
        ways = [c["Next"] for c in state["Choices"]] + [state["Default"]]
        return [r for way in ways for r in _records_reached(states, way)]
    if name == "DecodeKey":
        ways = [state["Next"]] + [c["Next"] for c in state["Catch"]]
        return [r for way in ways for r in _records_reached(states, way)]
    return [state]


def test_transient_service_errors_are_retried(machine):
    """Lambda's and EventBridge's own transient errors, as AWS's Step Functions guidance lists them."""
    _, _, definition = machine
    for name, state in definition["States"].items():
        retried = {e for rule in state.get("Retry", []) for e in rule["ErrorEquals"]}
        if state.get("Resource") == "${LambdaInvoke}":
            assert {"Lambda.ClientExecutionTimeoutException", "Lambda.ServiceException", "Lambda.AWSLambdaException",
                    "Lambda.SdkClientException", "Lambda.TooManyRequestsException"} <= retried, name
        if state.get("Resource") == "${EventBridgePutEvents}":
            # A PutEvents entry the bus refused fails the task with EventBridge.FailedEntry.
            assert "EventBridge.FailedEntry" in retried, name


def test_an_outcome_that_cannot_be_written_goes_to_the_record_dead_letter_queue(machine):
    """Never nowhere: a record state that still fails after its retries hands the execution to a queue."""
    props, _, definition = machine
    states = definition["States"]
    records = [n for n, s in states.items() if s.get("Resource") == "${DynamoDBPutItem}"]
    assert len(records) == 3
    for name in records:
        assert any("DynamoDB.ThrottlingException" in r["ErrorEquals"] for r in states[name]["Retry"]), name
        # only a newer upload's record may stop the write (it ends superseded); everything else is the queue's
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "ResultPath": None, "Next": "Superseded"},
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error", "Next": "SendToRecordDeadLetter"}], name
    send = states["SendToRecordDeadLetter"]
    assert send["Resource"] == "${SQSSendMessage}"
    assert send["Parameters"]["QueueUrl"] == "${RecordDeadLetterQueueUrl}"
    assert props["DefinitionSubstitutions"]["RecordDeadLetterQueueUrl"] == {"Ref": "RecordDeadLetterQueue"}
    assert send["Parameters"]["MessageBody"]["execution_input.$"] == "$$.Execution.Input"
    assert states[send["Next"]]["Type"] == "Fail"  # counted by the failed-executions alarm as well


def _predecessors(states: dict, name: str) -> set[str]:
    """Every state from which ``name`` can be reached."""
    found, frontier = set(), {name}
    while frontier:
        step = {n for n, s in states.items() if n not in found and frontier & (
            {s.get("Next"), s.get("Default")} | {c.get("Next") for c in s.get("Choices", [])})}
        found |= step
        frontier = step
    return found


def test_audit_sample_is_sent_to_review_after_its_dispatch_and_record(machine):
    _, _, definition = machine
    states = definition["States"]
    choice = states["IsAudited"]
    assert states["PublishClassified"]["Next"] == "IsAudited" and choice["Default"] == "Classified"
    assert {"PublishClassified", "RecordClassified"} <= _predecessors(states, "SendToAudit")
    body = states["SendToAudit"]["Parameters"]["MessageBody"]
    assert body["reason"] == "audit"
    assert states["SendToReview"]["Parameters"]["MessageBody"]["reason"] == "below_threshold"
    # The page reads the same fields from both kinds of message.
    assert set(body) == set(states["SendToReview"]["Parameters"]["MessageBody"])
    assert states["RecordClassified"]["Parameters"]["Item"]["audit"] == {"BOOL.$": "$.audit"}


def test_nothing_is_dispatched_or_sent_to_review_before_the_record_is_written(machine):
    """An older upload's execution that finishes last ends superseded at its record, before it can notify anyone;
    a notification that then fails turns the record into a failed one. Consumers get the upload's sequencer."""
    _, _, definition = machine
    states = definition["States"]
    notify = "${EventBridgePutEvents}", "${SQSSendMessage}"
    for record, notification in (("RecordClassified", "PublishClassified"), ("RecordNeedsReview", "SendToReview")):
        assert states[record]["Next"] == notification
        assert states[notification]["Resource"] in notify
        assert states[notification]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                                                  "Next": "RecordFailed"}]
    assert states["FilterLowConfidence"]["Next"] == "RecordClassified"
    low_confidence = states["FilterLowConfidence"]["Catch"]
    assert {c["Next"] for c in low_confidence if c["ErrorEquals"] == ["LowConfidenceError"]} == {"RecordNeedsReview"}
    for name, state in states.items():
        if state.get("Resource") in notify and name != "SendToRecordDeadLetter":
            assert _predecessors(states, name) & {"RecordClassified", "RecordNeedsReview"}, name
    (entry,) = states["PublishClassified"]["Parameters"]["Entries"]
    assert entry["Detail"]["sequencer.$"] == "$.upload.sequencer"
    for name in ("SendToReview", "SendToAudit"):
        assert states[name]["Parameters"]["MessageBody"]["sequencer.$"] == "$.upload.sequencer"


def test_function_timeouts_and_crashes_are_recorded_under_names_a_user_can_act_on(machine):
    _, _, definition = machine
    states = definition["States"]
    named = {"Sandbox.Timedout": "FunctionTimeout", "Runtime.ExitError": "FunctionCrashed",
             "Runtime.OutOfMemory": "FunctionCrashed", "Lambda.Unknown": "FunctionTimeoutOrOutOfMemory"}
    for task in ("SerializeImageData", "ClassifyImage", "FilterLowConfidence"):
        catches = states[task]["Catch"]
        assert catches[-1]["ErrorEquals"] == ["States.ALL"]  # the named ones come first
        for error, name in named.items():
            (catch,) = [c for c in catches if error in c["ErrorEquals"]]
            namer = states[catch["Next"]]
            assert namer["Parameters"] == {"Error": name, "Cause.$": "$.error.Cause"}, task
            assert namer["ResultPath"] == "$.error" and namer["Next"] == "IsKeyDecoded"


def test_a_failure_before_serialize_answered_is_recorded_under_the_decoded_key(machine):
    """Only serialize decodes EventBridge's URL-encoded key; when it could not answer, DecodeKey asks it again for
    the key alone, then the failure is recorded. Every way to RecordFailed that may still hold the encoded key
    (s3_key_encoding present) passes the IsKeyDecoded choice."""
    _, _, definition = machine
    states = definition["States"]
    choice = states["IsKeyDecoded"]
    assert choice["Choices"] == [{"Variable": "$.s3_key_encoding", "IsPresent": True, "Next": "DecodeKey"}]
    assert choice["Default"] == "RecordFailed"
    decode = states["DecodeKey"]
    assert decode["Parameters"]["FunctionName"] == states["SerializeImageData"]["Parameters"]["FunctionName"]
    assert decode["OutputPath"] == "$.Payload" and decode["Next"] == "RecordFailed"
    assert decode["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "RecordFailed"}]
    # a fresh environment answers a crash or a timeout of the one that failed
    assert any("Sandbox.Timedout" in r["ErrorEquals"] and "Runtime.ExitError" in r["ErrorEquals"]
               for r in decode["Retry"])
    assert {c["Next"] for c in states["SerializeImageData"]["Catch"]} <= {
        "NameFunctionTimeout", "NameFunctionCrash", "NameFunctionUnknownFailure", "IsKeyDecoded"}
    # Straight to the record only from where the key is literal: serialize's answer onwards, or decoded.
    def next_states(state: dict) -> set:
        return {state.get("Next"), state.get("Default")} | {c["Next"] for c in
                                                             state.get("Choices", []) + state.get("Catch", [])}

    into_record = {name for name, state in states.items() if "RecordFailed" in next_states(state)}
    assert into_record == {"IsImageUsable", "ClassifyImage", "FilterLowConfidence", "PublishClassified", "SendToReview",
                           "IsKeyDecoded", "DecodeKey"}


def test_a_record_is_written_only_over_an_older_upload_of_its_key(machine, repo):
    """Executions of one key finish in any order; the record keeps the newest upload (S3's sequencer). The same
    upload may rewrite its own record (a re-drive, an event delivered twice) until a person has decided it."""
    _, _, definition = machine
    states = definition["States"]
    for name in ("RecordClassified", "RecordNeedsReview", "RecordFailed"):
        params = states[name]["Parameters"]
        assert params["Item"]["sequencer"] == {"S.$": "$.upload.sequencer"}, name
        assert params["Item"]["upload"] == {"S.$": "States.JsonToString($.upload)"}, name
        assert params["ConditionExpression"] == (
            "attribute_not_exists(#sequencer) OR #sequencer < :sequencer"
            " OR (#sequencer = :sequencer AND attribute_not_exists(#decided_at))"), name
        assert params["ExpressionAttributeNames"] == {"#sequencer": "sequencer", "#decided_at": "decided_at"}, name
        assert params["ExpressionAttributeValues"] == {":sequencer": {"S.$": "$.upload.sequencer"}}, name
        # a condition failure is not a fault to retry
        assert not any("DynamoDB.ConditionalCheckFailedException" in r["ErrorEquals"] for r in states[name]["Retry"])
    # every way in names the upload: the event's object, a re-drive's recorded upload, or '0' (no upload known)
    assert states["FromEventBridgeEvent"]["Parameters"]["upload.$"] == (
        "States.JsonMerge($.upload_defaults, $.detail.object, false)")
    assert states["UploadDefaults"]["Result"] == {"sequencer": "0"}
    assert states["FromRedriveInput"]["Parameters"]["upload.$"] == "$.upload"
    assert states["FromDirectInput"]["Parameters"]["upload"] == {"sequencer": "0"}
    assert states["Superseded"]["Type"] == "Pass" and states["Superseded"]["End"] is True
    # the attribute the review page sets when a person decides
    assert "decided_at = :at" in (repo / "functions" / "reviews" / "decisions.py").read_text()
