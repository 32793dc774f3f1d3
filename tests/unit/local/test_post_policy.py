"""The twin's check of a presigned POST, on policies boto3 signs as the submit function does (S3's rules: the
signature, the expiry, every condition, every field allowed, the signer's s3:PutObject)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.config import Config

from local.front_door.post_policy import PolicyRefusal, check_policy

SECRET = "secret-of-the-role"
BUCKET = "intake"


def presigned(conditions=None, expires_in=300, key="api/team/photo.png"):
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="ASIATESTKEY", aws_secret_access_key=SECRET,
                      aws_session_token="session-token", config=Config(signature_version="s3v4"))
    conditions = conditions or [{"Content-Type": "image/png"}, ["content-length-range", 1, 100]]
    return s3.generate_presigned_post(Bucket=BUCKET, Key=key, ExpiresIn=expires_in,
                                      Fields={"Content-Type": "image/png"}, Conditions=conditions)["fields"]


def check(fields, size=50, now=None, allowed=True):
    check_policy(fields, BUCKET, size, lambda key: SECRET if key == "ASIATESTKEY" else None,
                 lambda *_: None if allowed else "denied", now=now)


def refusal(fields, **kwargs) -> PolicyRefusal:
    with pytest.raises(PolicyRefusal) as refused:
        check(fields, **kwargs)
    return refused.value


def test_a_policy_boto3_signed_is_accepted_within_its_limits():
    check(presigned(), size=1)
    check(presigned(), size=100)


def test_after_its_expiry_the_policy_is_refused():
    fields = presigned(expires_in=60)
    check(fields, now=datetime.now(timezone.utc) + timedelta(seconds=50))
    late = refusal(fields, now=datetime.now(timezone.utc) + timedelta(seconds=61))
    assert (late.status, late.code, late.message) == (403, "AccessDenied",
                                                      "Invalid according to Policy: Policy expired.")


@pytest.mark.parametrize("size, code", [(101, "EntityTooLarge"), (0, "EntityTooSmall")])
def test_a_file_outside_the_size_range_is_400(size, code):
    refused = refusal(presigned(), size=size)
    assert (refused.status, refused.code) == (400, code)


@pytest.mark.parametrize("change", [{"Content-Type": "image/jpeg"}, {"key": "api/team/other.png"},
                                    {"x-amz-security-token": "another-session"}])
def test_a_changed_field_fails_its_condition(change):
    refused = refusal({**presigned(), **change})
    assert (refused.status, refused.code) == (403, "AccessDenied")
    assert refused.message.startswith("Invalid according to Policy: Policy Condition failed: ")


def test_a_field_no_condition_allows_is_refused_and_x_ignore_fields_pass():
    assert "Extra input fields: x-amz-meta-owner" in refusal({**presigned(), "x-amz-meta-owner": "me"}).message
    check({**presigned(), "x-ignore-tracking": "1"})


def test_starts_with_conditions_hold_for_their_prefix_only():
    fields = presigned(conditions=[["starts-with", "$key", "api/team/"], {"Content-Type": "image/png"}],
                       key="api/team/${filename}")
    check({**fields, "key": "api/team/a.png"})
    assert refusal({**fields, "key": "api/other/a.png"}).code == "AccessDenied"


def test_a_bad_signature_an_unknown_key_no_policy_or_no_permission_is_refused():
    fields = presigned()
    assert refusal({**fields, "x-amz-signature": "0" * 64}).code == "SignatureDoesNotMatch"
    another_key = fields["x-amz-credential"].replace("ASIATESTKEY", "ASIAOTHER")
    assert refusal({**fields, "x-amz-credential": another_key}).code == "InvalidAccessKeyId"
    assert refusal({k: v for k, v in fields.items() if k != "policy"}).code == "AccessDenied"
    assert refusal(fields, allowed=False).message == "Access Denied"
