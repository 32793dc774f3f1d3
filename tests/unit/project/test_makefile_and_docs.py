"""The Makefile and docs a newcomer reads first: every target listed, every doc findable, nothing pointing at our own
machines."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    rules = set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", text, flags=re.MULTILINE))
    return rules - {"venv", "venv-dev"}  # the install steps the other targets run themselves


def test_make_help_lists_every_target():
    shown = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout
    listed = set(re.findall(r"^\s+make ([a-z][a-z0-9-]*)", shown, flags=re.MULTILINE))
    listed |= set(re.findall(r"\| make ([a-z][a-z0-9-]*)", shown))
    assert _targets() - {"help"} <= listed, f"not in `make help`: {sorted(_targets() - {'help'} - listed)}"


def test_help_lines_fit_a_terminal():
    shown = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout
    too_wide = [line for line in shown.splitlines() if len(line) > 80]
    assert not too_wide


def test_no_user_facing_default_or_doc_points_at_the_development_data_folder():
    code = ("training", "local", "monitoring", "functions", "client", "contracts")
    places = [REPO / "Makefile", REPO / "README.md", *REPO.glob("docs/*.md"),
              *(p for folder in code for p in (REPO / folder).rglob("*.py"))]
    offenders = [str(p.relative_to(REPO)) for p in places
                 if "../shared" in p.read_text() or "/shared/data" in p.read_text()]
    assert not offenders


def test_the_readme_is_an_onboarding_page_that_leads_to_every_doc():
    readme = (REPO / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move details into docs/"
    assert not [n for n, line in enumerate(lines, 1) if len(line) > 120]
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)", readme))
    unlinked = {f"docs/{page.name}" for page in REPO.glob("docs/*.md")} - linked
    assert not unlinked, f"not findable from README.md: {sorted(unlinked)}"
