"""One warm Lambda execution environment: imports a handler from its code directory and serves invocations.

Started by local/lambda_runtime.py as a separate process with only the function's environment. Requests
arrive as JSON lines on stdin; answers go out on the file descriptor named by LOCAL_TWIN_RESULT_FD, so
whatever the handler prints (logs, EMF metrics) on stdout/stderr stays out of the protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import uuid


class LambdaContext:
    """The attributes and method of the AWS Lambda Python context object that handlers use."""

    def __init__(self, request_id: str, deadline_ms: int):
        self.aws_request_id = request_id
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = os.environ["LOCAL_TWIN_FUNCTION_ARN"]
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def main() -> None:
    code_dir = os.environ["LAMBDA_TASK_ROOT"]
    # Like Lambda: the function's own folder first, and nothing of the twin's.
    sys.path[0] = code_dir
    os.chdir(code_dir)
    results = os.fdopen(int(os.environ.pop("LOCAL_TWIN_RESULT_FD")), "w", buffering=1)
    module_name, function_name = os.environ["_HANDLER"].rsplit(".", 1)
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
        init_error = None
    except Exception as exc:  # Lambda reports init failures on every invocation (Runtime.ImportModuleError).
        handler, init_error = None, _error_payload(exc, "Runtime.ImportModuleError")
    results.write(json.dumps({"ready": init_error is None}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(request.get("request_id") or str(uuid.uuid4()), request["deadline_ms"])
        if init_error:
            answer = {"error": init_error}
        else:
            try:
                answer = {"result": handler(request["event"], context)}
                json.dumps(answer)  # an unserializable result is the handler's error, as in Lambda
            except Exception as exc:
                answer = {"error": _error_payload(exc)}
        sys.stdout.flush()
        sys.stderr.flush()
        results.write(json.dumps(answer) + "\n")


def _error_payload(exc: BaseException, error_type: str | None = None) -> dict:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


if __name__ == "__main__":
    main()
