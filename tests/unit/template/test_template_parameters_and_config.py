"""Parameters as CloudFormation checks them (the twin checks them the same way), samconfig.toml's
placeholder, and the `sam local invoke` env-vars file that points the functions at the twin."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from contracts.stack import TWIN_ENDPOINT_PORT, TWIN_PORT
from local.template import Stack, TemplateError


@pytest.mark.parametrize("overrides, message", [
    ({"ConfidenceThreshold": "2"}, "Parameter 'ConfidenceThreshold' must be a number not greater than 1"),
    ({"ConfidenceThreshold": "-0.1"}, "Parameter 'ConfidenceThreshold' must be a number not less than 0"),
    ({"ConfidenceThreshold": "high"}, "Parameter 'ConfidenceThreshold' must be a number"),
    ({"EndpointName": "My_Endpoint"}, "Parameter 'EndpointName' failed to satisfy constraint: the name of your"),
    ({"EndpointName": "a" * 64}, "Parameter 'EndpointName' failed to satisfy constraint"),
    ({"WorkflowType": "FAST"}, "Parameter 'WorkflowType' must be one of AllowedValues (EXPRESS, STANDARD)"),
    ({"AlarmPeriodSeconds": "120"}, "Parameter 'AlarmPeriodSeconds' must be one of AllowedValues (60, 300, 900, 3600)"),
    ({"Bogus": "1"}, "unknown template parameters: Bogus"),
])
def test_the_twin_rejects_what_cloudformation_rejects(load_stack, overrides, message):
    with pytest.raises(TemplateError) as raised:
        load_stack(**overrides)
    assert str(raised.value).startswith(message)


def test_every_alarm_window_fits_cloudwatchs_limit(raw_template, load_stack):
    """PutMetricAlarm refuses Period x EvaluationPeriods over one day for a period under an hour, over seven days
    otherwise: every allowed AlarmPeriodSeconds with the largest AlarmEvaluationPeriods stays inside, and the
    twin (as CloudFormation) refuses a larger count before any alarm is made."""
    periods = raw_template["Parameters"]["AlarmPeriodSeconds"]["AllowedValues"]
    largest = raw_template["Parameters"]["AlarmEvaluationPeriods"]["MaxValue"]
    for period in periods:
        assert period * largest <= (86_400 if period < 3600 else 604_800), period
    with pytest.raises(TemplateError, match="AlarmEvaluationPeriods' must be a number not greater than"):
        load_stack(AlarmEvaluationPeriods=str(largest + 1))
    load_stack(AlarmEvaluationPeriods=str(largest), AlarmPeriodSeconds=str(max(p for p in periods if p < 3600)))


def test_values_cloudformation_accepts_load(load_stack):
    stack = load_stack(ConfidenceThreshold="1", EndpointName="a" * 63, AlarmPeriodSeconds="60", WorkflowType="STANDARD")
    assert stack.parameters["ConfidenceThreshold"] == "1"


def _samconfig(repo) -> dict:
    return tomllib.loads((repo / "samconfig.toml").read_text())["default"]


def _overrides(section: dict) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in section["parameters"]["parameter_overrides"].split())


@pytest.mark.parametrize("command", ["deploy", "sync"])
def test_samconfig_placeholder_fails_validation_and_names_the_fix(repo, load_stack, command):
    overrides = _overrides(_samconfig(repo)[command])
    assert overrides == {"EndpointName": "REPLACE-ME"}
    with pytest.raises(TemplateError, match=re.escape("make deploy ENDPOINT_NAME=<your-endpoint>")):
        load_stack(**overrides)


def test_local_invoke_uses_the_twins_endpoint_and_env_file(repo, load_stack):
    local_invoke = _samconfig(repo)["local_invoke"]["parameters"]
    stack = load_stack(**_overrides({"parameters": local_invoke}))
    assert stack.parameters["EndpointName"] == "vehicle-classifier"  # the twin's endpoint (local.twin)
    assert (repo / local_invoke["env_vars"]).is_file()


def test_invoke_env_file_names_the_templates_functions_and_only_variables_they_declare(repo, stack):
    env_file = json.loads((repo / "local" / "invoke-env.json").read_text())
    functions = stack.of_type("AWS::Lambda::Function")
    assert set(env_file) == set(functions)
    for logical_id, overrides in env_file.items():
        declared = stack.properties(logical_id)["Environment"]["Variables"]
        # SAM CLI silently ignores a variable the template does not declare.
        assert set(overrides) <= set(declared), logical_id
        assert declared["AWS_ENDPOINT_URL"] == "" and overrides["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{TWIN_PORT}"
    classify = env_file["ClassifyImageFunction"]
    assert classify["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] == f"http://127.0.0.1:{TWIN_ENDPOINT_PORT}"
    assert classify["ENDPOINT_NAME"] == "vehicle-classifier"


def test_sample_events_name_the_bucket_make_local_creates(repo, load_stack):
    twin_bucket = Stack.load(
        repo / "template.yaml", name="scones-twin", region="us-east-1",
        parameters={"EndpointName": "vehicle-classifier"}).physical_ids["IntakeBucket"]
    for path in sorted((repo / "events").glob("*.json")):
        event = json.loads(path.read_text())
        if "routeKey" in event:  # an HTTP API request names no bucket
            continue
        bucket = event["detail"]["bucket"]["name"] if "detail" in event else event["s3_bucket"]
        assert bucket == twin_bucket, path.name
