"""Onboarding reviewers against the twin, as an operations lead does it: python -m review add-reviewer and
remove-reviewer put a person in and out of the user pool's reviewers group."""

from __future__ import annotations

import pytest

from review.__main__ import main


def groups_of(twin, user: str) -> list[str]:
    answer = twin.client("cognito-idp").admin_list_groups_for_user(UserPoolId=twin.outputs["UserPoolId"], Username=user)
    return [g["GroupName"] for g in answer["Groups"]]


def run(twin, *argv: str) -> int:
    command, *rest = argv
    return main([command, "--port", str(twin.settings.port), *rest])


def test_a_reviewer_is_added_with_a_temporary_password_and_removed(twin, capsys):
    assert run(twin, "add-reviewer", "ana", "--email", "ana@example.com") == 0
    printed = capsys.readouterr().out
    assert "ana is a reviewer" in printed and "temporary password" in printed
    assert groups_of(twin, "ana") == [twin.outputs["ReviewersGroupName"]]
    user = twin.client("cognito-idp").admin_get_user(UserPoolId=twin.outputs["UserPoolId"], Username="ana")
    assert user["UserStatus"] == "FORCE_CHANGE_PASSWORD"
    assert {"Name": "email", "Value": "ana@example.com"} in user["UserAttributes"]

    assert run(twin, "add-reviewer", "ana", "--email", "ana@example.com") == 0  # again: nothing new, still one
    assert "already had a user" in capsys.readouterr().out
    assert groups_of(twin, "ana") == ["reviewers"]

    assert run(twin, "remove-reviewer", "ana") == 0
    assert groups_of(twin, "ana") == []
    assert run(twin, "remove-reviewer", "ana", "--delete") == 0
    assert run(twin, "remove-reviewer", "ana") == 2
    assert capsys.readouterr().err.strip().endswith("no user 'ana' in the user pool")


@pytest.mark.parametrize("argv, says", [
    (["add-reviewer", "bad name", "--email", "x@example.com"], "user name 'bad name'"),
    (["add-reviewer", "bo", "--email", "not-an-address"], "is not an e-mail address"),
])
def test_bad_input_is_a_one_line_error(twin, capsys, argv, says):
    assert run(twin, *argv) == 2
    error = capsys.readouterr().err.strip()
    assert says in error and "\n" not in error
