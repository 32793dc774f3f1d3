"""`python -m local`: the twin, and its other jobs (demo, benchmark) as commands of the same line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from local.__main__ import COMMANDS, main

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_answers_help_under_its_own_name(command, help_text):
    assert help_text(main, [command]).startswith(f"usage: python -m local {command}")


def test_the_twins_own_help_names_the_other_commands():
    run = subprocess.run([sys.executable, "-m", "local", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: python -m local ")
    for command in COMMANDS:
        assert f"python -m local {command} --help" in run.stdout


def test_a_bad_option_is_one_line_and_starts_nothing(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--endpoint-down", "0"])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--endpoint-down takes a positive number of seconds")
