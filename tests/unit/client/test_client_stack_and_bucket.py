"""The client's view of a deployed stack (names from its outputs, one-line errors) and emptying its bucket."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from client.__main__ import main
from client.bucket import empty_bucket
from contracts.stack import TargetError, stack


@pytest.fixture
def aws(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


def test_emptying_removes_every_version_and_delete_marker_so_the_bucket_can_be_deleted(aws):
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="intake", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_bucket_versioning(Bucket="intake", VersioningConfiguration={"Status": "Enabled"})
        for i in range(3):
            s3.put_object(Bucket="intake", Key="photos/a.png", Body=b"v%d" % i)
        s3.put_object(Bucket="intake", Key="photos/b.png", Body=b"b")
        s3.delete_object(Bucket="intake", Key="photos/b.png")  # leaves a delete marker
        s3.put_object(Bucket="intake", Key="photos/c.png", Body=b"c")
        # Versioning stays Enabled here: with it Suspended, moto 5.2 ignores the VersionId of a DeleteObjects
        # entry and drops the whole key, delete markers included, and fails; S3 deletes just that version.

        with pytest.raises(s3.exceptions.ClientError, match="BucketNotEmpty"):
            s3.delete_bucket(Bucket="intake")
        assert empty_bucket(s3, "intake") == 6  # 3 versions of a, b and its marker, c
        s3.delete_bucket(Bucket="intake")


def _described(outputs: dict[str, str]) -> dict:
    return {"Stacks": [{"StackName": "s", "CreationTime": "2026-01-01T00:00:00Z", "StackStatus": "CREATE_COMPLETE",
                        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]}


def _cloudformation_answers(monkeypatch, add: str, *args, **kwargs) -> None:
    """Every CloudFormation client made from now on answers DescribeStacks as given (Stubber)."""
    real_client = boto3.session.Session.client

    def client(self, service, **client_kwargs):
        made = real_client(self, service, **client_kwargs)
        if service == "cloudformation":
            stub = Stubber(made)
            getattr(stub, add)("describe_stacks", *args, **kwargs)
            stub.activate()
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)


def test_a_stack_is_found_by_its_outputs(aws, monkeypatch):
    _cloudformation_answers(monkeypatch, "add_response",
                            _described({"IntakeBucketName": "b", "ResultsTableName": "t"}),
                            {"StackName": "scones-vehicle-classifier"})
    target = stack("scones-vehicle-classifier")
    assert (target.bucket, target.table) == ("b", "t")
    assert target.description == "stack scones-vehicle-classifier in eu-west-1"


def test_a_missing_stack_or_region_is_one_line_naming_the_fix(aws, monkeypatch, capsys):
    # What CloudFormation answers for a stack that does not exist.
    _cloudformation_answers(monkeypatch, "add_client_error", service_error_code="ValidationError",
                            service_message="Stack with id nope does not exist", http_status_code=400)
    assert main(["results", "--stack", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stack 'nope' does not exist in eu-west-1: deploy it with `make deploy`" in err

    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # boto3 does not read it
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(TargetError, match="export AWS_DEFAULT_REGION=<region>"):
        stack("scones-vehicle-classifier")


def test_no_twin_running_is_one_line_naming_make_local(capsys):
    from local.twin import free_port

    port = free_port()
    assert main(["results", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: nothing answers at http://127.0.0.1:{port}: start the twin with `make local` " \
                  f"(PORT={port}), or pass --stack NAME for a deployed stack\n"
