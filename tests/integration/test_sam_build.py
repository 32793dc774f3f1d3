"""`sam build` turns the repository into deployable artifacts: code, dependencies, the right platform.

Runs the real SAM CLI with the project's samconfig.toml (cached, parallel builds), no container.
pip downloads the functions' requirements from PyPI for the Lambda platform (python3.13, the template's
architecture). Everything it writes goes to a temporary folder, none of it into the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from samtranslator.yaml_helper import yaml_parse

REPO = Path(__file__).resolve().parents[2]
# ELF e_machine values of the two Lambda architectures.
ELF_MACHINE = {"arm64": 183, "x86_64": 62}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"`{name}` is neither on PATH nor next to {sys.executable}; run `make venv`")
    return found


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """(build folder, built template) of one `sam build` of template.yaml."""
    if not shutil.which("python3.13"):
        pytest.fail("sam build needs python3.13 (the functions' runtime) on PATH; run the tests with "
                    "`make test`, which adds pyenv's 3.13, or put a python3.13 on PATH")
    work = tmp_path_factory.mktemp("sam")
    build_dir, cache_dir = work / "build", work / "cache"
    command = [_tool("sam"), "build", "--template-file", str(REPO / "template.yaml"),
               "--config-file", str(REPO / "samconfig.toml"),
               "--build-dir", str(build_dir), "--cache-dir", str(cache_dir)]
    # cwd outside the repo: cached builds keep dependencies in ./.aws-sam/deps.
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=1100,
                            env={**os.environ, "SAM_CLI_TELEMETRY": "0"})
    assert result.returncode == 0, f"sam build failed:\n{result.stdout}\n{result.stderr}"
    built_template = build_dir / "template.yaml"
    assert built_template.is_file(), f"no built template in {build_dir}"
    return build_dir, yaml_parse(built_template.read_text())


def _functions(template):
    functions = {lid: r for lid, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    source = yaml_parse((REPO / "template.yaml").read_text())["Resources"]
    assert set(functions) == {lid for lid, r in source.items() if r["Type"] == "AWS::Serverless::Function"}
    return functions


def _source_dir(function_lid: str) -> Path:
    source = yaml_parse((REPO / "template.yaml").read_text())
    return REPO / source["Resources"][function_lid]["Properties"]["CodeUri"]


def test_every_function_is_built_with_its_code(build):
    build_dir, template = build
    for lid, function in _functions(template).items():
        artifact = build_dir / function["Properties"]["CodeUri"]
        assert artifact.is_dir(), f"{lid}: built CodeUri {artifact} missing"
        for module in _source_dir(lid).glob("*.py"):
            assert (artifact / module.name).read_bytes() == module.read_bytes(), f"{lid}: {module.name} differs"
        for asset in _source_dir(lid).glob("assets/*"):  # the review page's HTML, script and style
            assert (artifact / "assets" / asset.name).read_bytes() == asset.read_bytes(), f"{lid}: {asset.name}"
        handler_module = function["Properties"]["Handler"].rsplit(".", 1)[0]
        assert (artifact / f"{handler_module}.py").is_file(), lid


def _distribution(requirement: str) -> str:
    """'aws-lambda-powertools[parser]>=3.20,<4' -> 'aws_lambda_powertools' (how its .dist-info is named)."""
    name = re.match(r"\s*([A-Za-z0-9._-]+)", requirement).group(1)
    return re.sub(r"[-_.]+", "_", name).lower()


def test_every_function_ships_its_requirements(build):
    build_dir, template = build
    for lid, function in _functions(template).items():
        artifact = build_dir / function["Properties"]["CodeUri"]
        installed = {re.sub(r"-[^-]+\.dist-info$", "", p.name).lower() for p in artifact.glob("*.dist-info")}
        lines = (_source_dir(lid) / "requirements.txt").read_text().splitlines()
        wanted = {_distribution(line) for line in lines if line.strip() and not line.lstrip().startswith("#")}
        assert wanted, f"{lid}: empty requirements.txt"
        assert wanted <= installed, f"{lid}: not installed: {sorted(wanted - installed)}"
        # Every handler imports Powertools at cold start.
        assert (artifact / "aws_lambda_powertools" / "__init__.py").is_file(), lid
    serialize = build_dir / template["Resources"]["SerializeImageFunction"]["Properties"]["CodeUri"]
    assert (serialize / "PIL" / "Image.py").is_file(), "serialize decodes images with Pillow"


def _elf_machine(path: Path) -> int | None:
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return None
    return struct.unpack("<H" if header[5] == 1 else ">H", header[18:20])[0]


def test_native_extensions_match_the_lambda_runtime(build):
    """Wheels for the build machine would import fine here and crash on Lambda (python3.13, arm64)."""
    build_dir, template = build
    for lid, function in _functions(template).items():
        props = {**template.get("Globals", {}).get("Function", {}), **function["Properties"]}
        (architecture,) = props.get("Architectures", ["x86_64"])
        runtime = props["Runtime"]
        tag = "cpython-" + runtime.removeprefix("python").replace(".", "")
        artifact = build_dir / props["CodeUri"]
        extensions = [p for p in artifact.rglob("*.so*") if p.is_file() and _elf_machine(p) is not None]
        if lid == "SerializeImageFunction":
            assert any(p.parent.name == "PIL" for p in extensions), "Pillow's C extension is missing"
        for extension in extensions:
            assert _elf_machine(extension) == ELF_MACHINE[architecture], \
                f"{lid}: {extension.name} is not {architecture}"
            if re.search(r"\.cpython-\d+", extension.name):
                assert tag in extension.name, f"{lid}: {extension.name} is not built for {runtime}"


def test_every_module_ships_bytecode_the_runtime_uses_without_checking_the_source(build):
    """Cold starts load bytecode (functions/build.mk) instead of compiling Powertools, pydantic and Pillow."""
    build_dir, template = build
    for lid, function in _functions(template).items():
        artifact = build_dir / function["Properties"]["CodeUri"]
        sources = list(artifact.rglob("*.py"))
        assert len(sources) > 50, lid
        for source in sources:
            compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
            assert compiled.is_file(), f"{lid}: no bytecode for {source.relative_to(artifact)}"
            # PEP 552 header: magic, then flags; 0b01 = hash-based and not checked against the source.
            assert int.from_bytes(compiled.read_bytes()[4:8], "little") == 0b01, f"{lid}: {compiled.name} is checked"
