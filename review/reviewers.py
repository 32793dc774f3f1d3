"""Who may review: members of the user pool's reviewers group (the stack output ReviewersGroupName).

Adding a reviewer creates their user with a temporary password (Cognito e-mails it on AWS; the twin sends no mail,
so it is printed there) and puts them in the group; they choose their own password at first sign-in. Removing one
takes them out of the group and signs them out everywhere (their refresh tokens stop working; an access token
already issued keeps working until it expires, at most an hour: API Gateway does not check revocation).
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

from contracts.stack import Target

USER_NAME = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ReviewerError(Exception):
    """A name, an address or the stack is not what reviewer onboarding needs; the message says why."""


@dataclass
class Added:
    user: str
    created: bool
    temporary_password: str | None  # the twin's only: on AWS Cognito e-mails it


def _pool_and_group(target: Target) -> tuple[str, str]:
    pool, group = target.outputs.get("UserPoolId"), target.outputs.get("ReviewersGroupName")
    if not pool or not group:
        raise ReviewerError(f"{target.description} has no user pool or reviewers group (outputs UserPoolId, "
                            "ReviewersGroupName): deploy the current template, or restart make local")
    return pool, group


def _temporary_password() -> str:
    # Meets the pool's policy: 12+ characters with upper and lower case letters and digits.
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(16)) + "Aa1"


def add_reviewer(target: Target, user: str, email: str, *, on_twin: bool) -> Added:
    if not USER_NAME.match(user):
        raise ReviewerError(f"user name {user!r}: 1-128 letters, digits and . _ @ + -")
    if not EMAIL.match(email):
        raise ReviewerError(f"{email!r} is not an e-mail address")
    pool, group = _pool_and_group(target)
    cognito = target.client("cognito-idp")
    password, created = None, True
    try:
        if on_twin:
            password = _temporary_password()
            cognito.admin_create_user(UserPoolId=pool, Username=user, TemporaryPassword=password,
                                      MessageAction="SUPPRESS",
                                      UserAttributes=[{"Name": "email", "Value": email},
                                                      {"Name": "email_verified", "Value": "true"}])
        else:
            cognito.admin_create_user(UserPoolId=pool, Username=user, DesiredDeliveryMediums=["EMAIL"],
                                      UserAttributes=[{"Name": "email", "Value": email},
                                                      {"Name": "email_verified", "Value": "true"}])
    except cognito.exceptions.UsernameExistsException:
        created, password = False, None  # an existing user (a driver, say) becomes a reviewer too
    cognito.admin_add_user_to_group(UserPoolId=pool, Username=user, GroupName=group)
    return Added(user, created, password)


def remove_reviewer(target: Target, user: str, *, delete: bool = False) -> None:
    pool, group = _pool_and_group(target)
    cognito = target.client("cognito-idp")
    try:
        cognito.admin_remove_user_from_group(UserPoolId=pool, Username=user, GroupName=group)
        cognito.admin_user_global_sign_out(UserPoolId=pool, Username=user)
        if delete:
            cognito.admin_delete_user(UserPoolId=pool, Username=user)
    except cognito.exceptions.UserNotFoundException:
        raise ReviewerError(f"no user {user!r} in the user pool") from None
