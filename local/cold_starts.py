"""`make benchmark-cold-start`: each function's built size and cold import time, with and without bytecode.

Builds every function with the recipe `sam build` runs (functions/build.mk), for this machine's platform instead
of arm64 so it can run here, into a temporary folder. Then imports each handler module (`import app`, what a
Lambda cold start does before the first event) in fresh python3.13 processes that may not write bytecode, as
in Lambda's read-only /var/task: once as built, and once with the bytecode removed, which is what SAM's default
Python builder ships. boto3 is on the path precompiled, as the Lambda runtime provides it. Prints the median.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from local.template import Stack  # the template's functions, code folders and environments

REPO = Path(__file__).resolve().parent.parent

PYTHON = "python3.13"
IMPORT = ("import sys, time; sys.path[:0] = [{task!r}, {runtime!r}]; started = time.perf_counter(); import app; "
          "print(time.perf_counter() - started)")


def size_mb(folder: Path, *, bytecode: bool = True) -> float:
    files = (p for p in folder.rglob("*") if p.is_file() and (bytecode or p.suffix != ".pyc"))
    return sum(p.stat().st_size for p in files) / 1e6


def build(logical_id: str, code_dir: Path, out: Path) -> Path:
    out.mkdir(parents=True)
    subprocess.run(["make", "-s", "-f", str(code_dir / "Makefile"), f"build-{logical_id}", "PIP_PLATFORM="],
                   env={**os.environ, "ARTIFACTS_DIR": str(out)}, check=True)
    return out


def import_seconds(task: Path, runtime: Path, environment: dict[str, str], runs: int) -> float:
    env = {"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1", "AWS_REGION": "us-east-1",
           "AWS_DEFAULT_REGION": "us-east-1", **environment}
    times = [float(subprocess.run([PYTHON, "-c", IMPORT.format(task=str(task), runtime=str(runtime))], cwd=task,
                                  env=env, capture_output=True, text=True, check=True).stdout) for _ in range(runs)]
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local cold-starts", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per measurement (default 7)")
    args = parser.parse_args(argv)
    if not shutil.which(PYTHON):
        print(f"error: {PYTHON} (the functions' runtime) is not on PATH; `make benchmark-cold-start` adds pyenv's",
              file=sys.stderr)
        return 2
    stack = Stack.load(REPO / "template.yaml", name="bench", region="us-east-1", parameters={"EndpointName": "bench"})
    with tempfile.TemporaryDirectory(prefix="cold-starts-") as tmp:
        runtime = Path(tmp) / "runtime"
        subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "boto3",
                        "--target", str(runtime)], check=True)
        subprocess.run([PYTHON, "-m", "compileall", "-q", "-j", "0", str(runtime)], check=True)
        print(f"{'function':<26} {'MB':>6} {'MB no .pyc':>10} {'import, bytecode':>17} {'import, source':>15} "
              f"{'ratio':>6}")
        for logical_id, code_dir in sorted(stack.code_dirs.items()):
            task = build(logical_id, code_dir, Path(tmp) / logical_id)
            environment = {k: str(v) for k, v in stack.properties(logical_id)["Environment"]["Variables"].items()}
            built_mb, source_mb = size_mb(task), size_mb(task, bytecode=False)
            with_bytecode = import_seconds(task, runtime, environment, args.runs)
            for cache in list(task.rglob("__pycache__")):
                shutil.rmtree(cache)
            from_source = import_seconds(task, runtime, environment, args.runs)
            print(f"{logical_id:<26} {built_mb:>6.1f} {source_mb:>10.1f} {with_bytecode * 1000:>14.0f} ms "
                  f"{from_source * 1000:>12.0f} ms {from_source / with_bytecode:>5.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
