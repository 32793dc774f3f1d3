"""Fixtures every test folder may use."""

from __future__ import annotations

import pytest


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials in us-east-1 and no profile, region or endpoint override from the caller's shell, so
    boto3 talks only to moto (or, in the review tests, to what the test starts)."""
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def help_text(capsys):
    """What a command line's ``main(argv + ["--help"])`` prints, once it has exited 0 as argparse does."""

    def run(main, argv: list[str]) -> str:
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
        return capsys.readouterr().out

    return run
