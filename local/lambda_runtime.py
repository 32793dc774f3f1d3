"""Runs Lambda functions from their code folders in warm worker processes, without Docker.

Each function gets up to ``concurrency`` worker processes (Lambda's execution environments), each with
only the function's own environment variables plus the standard AWS configuration that points boto3 at
the emulated services. Output of the handler is forwarded to the twin's log; EMF metric lines are kept.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("twin.lambda")

WORKER = Path(__file__).with_name("lambda_worker.py")


@dataclass(frozen=True)
class LocalFunction:
    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout_s: float
    memory_mb: int
    # What Lambda puts in the environment for the execution role: temporary credentials of that role.
    credentials: dict[str, str] = field(default_factory=dict)


@dataclass
class Invocation:
    """What Lambda's Invoke API returns: a payload, and an error type when the handler failed."""

    payload: Any
    function_error: str | None
    duration_ms: float


class _Worker:
    def __init__(self, function: LocalFunction, base_env: dict[str, str], on_output: Callable[[str, str], None]):
        read_fd, write_fd = os.pipe()
        # An empty value in the template means "not set" to botocore, so the twin's endpoints stay.
        declared = {k: v for k, v in function.environment.items() if v != "" or k not in base_env}
        env = {**base_env, **declared, **function.credentials,
               "AWS_LAMBDA_FUNCTION_NAME": function.name,
               "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
               "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
               "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
               "AWS_LAMBDA_LOG_STREAM_NAME": uuid.uuid4().hex,
               "LAMBDA_TASK_ROOT": str(function.code_dir),
               "_HANDLER": function.handler,
               "LOCAL_TWIN_FUNCTION_ARN": function.arn,
               "LOCAL_TWIN_RESULT_FD": str(write_fd)}
        self.process = subprocess.Popen(
            [sys.executable, "-u", str(WORKER)], env=env, cwd=function.code_dir, pass_fds=(write_fd,),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            # Its own session: a Ctrl-C in the terminal stops the twin, which then stops its workers.
            start_new_session=True,
        )
        os.close(write_fd)
        self.results = os.fdopen(read_fd, "r")
        self._pump = threading.Thread(target=self._forward, args=(function.name, on_output), daemon=True)
        self._pump.start()
        ready = self.results.readline()
        if not ready:
            raise RuntimeError(f"{function.name}: worker process exited during start-up")

    def _forward(self, name: str, on_output: Callable[[str, str], None]) -> None:
        for line in self.process.stdout:
            on_output(name, line.rstrip("\n"))

    def invoke(self, event: Any, request_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The worker's answer, or None when it did not answer in time (the worker is then killed)."""
        deadline_ms = int((time.time() + timeout_s) * 1000)
        invocation = {"event": event, "request_id": request_id, "deadline_ms": deadline_ms}
        self.process.stdin.write(json.dumps(invocation) + "\n")
        self.process.stdin.flush()
        answer: list[str] = []
        reader = threading.Thread(target=lambda: answer.append(self.results.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not answer or not answer[0]:
            self.stop()
            return None
        return json.loads(answer[0])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._pump.join(timeout=2)
        for stream in (self.process.stdin, self.process.stdout, self.results):
            try:
                stream.close()
            except OSError:
                pass


class FunctionPool:
    """Up to ``concurrency`` warm workers for one function; extra invocations wait, as with reserved concurrency."""

    def __init__(self, function: LocalFunction, base_env: dict[str, str], concurrency: int,
                 on_output: Callable[[str, str], None]):
        self.function = function
        self._base_env = base_env
        self._on_output = on_output
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._closed = False

    def warm_up(self) -> None:
        worker = self._take()
        self._give_back(worker)

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
        worker = _Worker(self.function, self._base_env, self._on_output)
        with self._lock:
            self._all.append(worker)
        return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if worker.alive() and not self._closed:
                self._idle.append(worker)

    def invoke(self, event: Any) -> Invocation:
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        with self._slots:
            worker = self._take()
            try:
                answer = worker.invoke(event, request_id, self.function.timeout_s)
            finally:
                self._give_back(worker)
        duration_ms = (time.perf_counter() - started) * 1000
        if answer is None:
            error = {"errorMessage": f"Task timed out after {self.function.timeout_s:.2f} seconds",
                     "errorType": "Sandbox.Timedout"}
            return Invocation(error, "Unhandled", duration_ms)
        if "error" in answer:
            return Invocation(answer["error"], "Unhandled", duration_ms)
        return Invocation(answer["result"], None, duration_ms)

    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._all if w.alive()]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all, self._idle = self._all, [], []
        for worker in workers:
            worker.stop()


@dataclass
class LambdaRuntime:
    """All of a stack's functions, found by name or ARN as Lambda's Invoke API accepts them."""

    base_env: dict[str, str]
    concurrency: int = 4
    on_output: Callable[[str, str], None] = lambda name, line: log.info("[%s] %s", name, line)
    pools: dict[str, FunctionPool] = field(default_factory=dict)

    def add(self, function: LocalFunction, concurrency: int | None = None) -> None:
        self.pools[function.name] = FunctionPool(function, self.base_env, concurrency or self.concurrency,
                                                 self.on_output)

    def find(self, name_or_arn: str) -> FunctionPool | None:
        # Invoke accepts a name, a full ARN, or either with a ":qualifier" suffix.
        name = name_or_arn.split(":function:", 1)[-1].split(":", 1)[0]
        return self.pools.get(name)

    def warm_up(self) -> None:
        threads = [threading.Thread(target=p.warm_up) for p in self.pools.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def pids(self) -> list[int]:
        """The live worker processes of every function (for CPU accounting)."""
        return [pid for pool in self.pools.values() for pid in pool.pids()]

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
