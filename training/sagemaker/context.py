"""AWS context shared by the SageMaker launch commands: role, region, resource names.

Imports nothing heavy: the SageMaker SDK is imported by the commands that need it.
"""

from __future__ import annotations

import datetime as dt
import os
import re

from ..s3_uri import parse_s3_uri

ROLE_ENV = "SAGEMAKER_ROLE_ARN"
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9-]+")
MAX_NAME_LENGTH = 63  # SageMaker job, model, endpoint and schedule names


class LaunchError(Exception):
    """A launch command cannot proceed (bad input, missing resource); the message says why."""


def resolve_role(role: str | None) -> str:
    """The execution role ARN from --role or $SAGEMAKER_ROLE_ARN."""
    role = role or os.environ.get(ROLE_ENV)
    if not role:
        raise LaunchError(f"no execution role: pass --role ARN or set {ROLE_ENV}")
    if not _ROLE_ARN.match(role):
        raise LaunchError(f"{role!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return role


def region_of(boto_session) -> str:
    region = boto_session.region_name
    if not region:
        raise LaunchError("no AWS region configured: export AWS_DEFAULT_REGION=<region> "
                          "(boto3 reads AWS_DEFAULT_REGION, not AWS_REGION) or run `aws configure`")
    return region


def unique_name(base: str, now: dt.datetime | None = None) -> str:
    """base-YYYYmmdd-HHMMSS, cleaned to SageMaker's [a-zA-Z0-9-] and 63 characters."""
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d-%H%M%S")
    base = _NAME_CHARS.sub("-", base).strip("-")[: MAX_NAME_LENGTH - len(stamp) - 1]
    return f"{base}-{stamp}"


def sagemaker_session(boto_session, s3_uri: str):
    """A sagemaker.core Session whose default bucket/prefix is s3_uri (for SDK-staged uploads)."""
    from sagemaker.core.helper.session_helper import Session

    bucket, prefix = parse_s3_uri(s3_uri)
    return Session(boto_session=boto_session, default_bucket=bucket, default_bucket_prefix=prefix or None)
