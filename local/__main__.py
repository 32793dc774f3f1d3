"""`make local`: run the twin in the foreground until Ctrl-C; `python -m local demo|benchmark|cold-starts` for the rest.

    python -m local [--port P] [--fault ...] [--endpoint-down S]   # the twin, until Ctrl-C (make local)
    python -m local demo [--images DIR] [--shift dark]            # the main job end to end (make demo)
    python -m local benchmark [--bursts 300 1000]                 # throughput and latency (make benchmark-twin)
    python -m local cold-starts [--runs 7]                        # cold starts (make benchmark-cold-start)

Upload with the stock AWS CLI, boto3 or `python -m client submit` against the printed endpoint URL; each
execution's progress shows in this log; outcomes land in the results table (`make results` prints it).
The twin keeps everything in memory: stopping it forgets every object, record and message.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from contracts.stack import (TWIN_API_PORT, TWIN_AUTH_PORT, TWIN_ENDPOINT_PORT, TWIN_OUTPUTS, TWIN_PORT,
                             TWIN_REVIEW_PORT)
from local.faults import Fault, FaultError
from local.template import TemplateError
from local.twin import CREDENTIALS, REGION, ROOT, PortInUseError, Twin, TwinSettings

# How a user moves each port, from make and from this command.
PORT_SETTINGS = {"port": ("PORT", "--port"), "endpoint_port": ("ENDPOINT_PORT", "--endpoint-port"),
                 "api_port": ("API_PORT", "--api-port"), "auth_port": ("AUTH_PORT", "--auth-port"),
                 "review_port": ("REVIEW_PORT", "--review-port")}


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--parameter takes Key=Value, got {pair!r}")
        parameters[key] = value
    return parameters


def banner(twin: Twin, outputs_file: Path) -> str:
    out, url, port = twin.outputs, twin.url, twin.settings.port
    env = " ".join(f"{k}={v}" for k, v in CREDENTIALS.items() if k != "AWS_SESSION_TOKEN")
    make_port = "" if port == TWIN_PORT else f" PORT={port}"
    return f"""
Local twin of stack {twin.deployment.stack.name} is running (state is in memory: Ctrl-C forgets it).
  AWS endpoint (S3, EventBridge, Step Functions, DynamoDB, SQS, Cognito, IAM): {url}
  SageMaker endpoint {twin.endpoint_name!r}: {twin.endpoint.url}
  API (ApiUrl):            {out['ApiUrl']}
  token URL (TokenUrl):    {out['TokenUrl']}
  user pool (UserPoolId):  {out['UserPoolId']}
  every output, as JSON:   {outputs_file}
  intake bucket:   {out['IntakeBucketName']}
  results table:   {out['ResultsTableName']}
  review queue:    {out['ReviewQueueUrl']}
  ground truth:    {out['GroundTruthBucketName']}

Resolve the photos the model is unsure of (and the audit sample) on the review page, {out['ReviewPageUrl']}
signed in as a reviewer (the command prints a temporary password; you choose your own at first sign-in):
  python -m review add-reviewer ana --email ana@example.com --port {port}

Give another team (or yourself) an app client for the API, then follow docs/api.md or docs/twin.md's curl steps:
  python -m client onboard-team my-team --scopes submit,read --port {port}

Try it from another terminal:
  make submit{make_port} PHOTO=local/sample_images/bicycle   # upload, wait, print outcomes
  make results{make_port}                                     # every record as a table
or with the stock AWS CLI:
  export {env} AWS_DEFAULT_REGION={REGION}
  aws --endpoint-url {url} s3 cp photo.png s3://{out['IntakeBucketName']}/photos/photo.png
  aws --endpoint-url {url} dynamodb scan --table-name {out['ResultsTableName']}
  aws --endpoint-url {url} sqs get-queue-attributes --attribute-names All --queue-url {out['ReviewQueueUrl']}
Ctrl-C stops everything.
"""


def write_outputs(twin: Twin, path: Path) -> None:
    """The stack's outputs as `aws cloudformation describe-stacks` would list them, for any HTTP client to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(twin.outputs.items())), indent=2) + "\n")


# python -m local COMMAND: the twin's other jobs, each its module's main()
COMMANDS = {"demo": "local.demo", "benchmark": "local.benchmark", "cold-starts": "local.cold_starts"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    return run_twin(argv)


def run_twin(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local", description=__doc__.splitlines()[0],
        epilog="other commands: python -m local demo --help, python -m local benchmark --help, "
               "python -m local cold-starts --help")
    parser.add_argument("--port", type=int, default=TWIN_PORT,
                        help=f"port of the emulated AWS services (default {TWIN_PORT})")
    parser.add_argument("--endpoint-port", type=int, default=TWIN_ENDPOINT_PORT,
                        help=f"port of the local SageMaker endpoint (default {TWIN_ENDPOINT_PORT}; 0 = any)")
    parser.add_argument("--api-port", type=int, default=TWIN_API_PORT,
                        help=f"port of the HTTP API, ApiUrl (default {TWIN_API_PORT}; 0 = any)")
    parser.add_argument("--auth-port", type=int, default=TWIN_AUTH_PORT,
                        help=f"port of the user pool's token endpoint, TokenUrl (default {TWIN_AUTH_PORT}; 0 = any)")
    parser.add_argument("--review-port", type=int, default=TWIN_REVIEW_PORT,
                        help=f"port of the review page and its API, ReviewPageUrl (default {TWIN_REVIEW_PORT}; "
                             "0 = any)")
    parser.add_argument("--outputs", type=Path, default=TWIN_OUTPUTS,
                        help="write the stack's outputs here as JSON (default build/twin/outputs.json)")
    parser.add_argument("--stack-name", default="scones-twin")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "training" / "model")
    parser.add_argument("--capture-dir", type=Path, default=ROOT / "build" / "twin" / "capture",
                        help="where the endpoint writes data capture (default build/twin/capture)")
    parser.add_argument("--parameter", action="append", default=[], metavar="Key=Value",
                        help="template parameter override, as with sam deploy --parameter-overrides")
    parser.add_argument("--fault", action="append", default=[], metavar="service:Operation:N[:partial]",
                        help="make the state machine's next N calls of an operation fail (local/faults.py): "
                             "dynamodb:PutItem:N, sqs:SendMessage:N, events:PutEvents:N:partial")
    parser.add_argument("--endpoint-down", type=float, metavar="SECONDS",
                        help="start with the endpoint down; it comes back by itself after SECONDS (an outage to "
                             "watch the retries, the failed records and python -m client redrive at work)")
    parser.add_argument("--verbose", action="store_true", help="also show the emulator's request log")
    args = parser.parse_args(argv)
    if args.endpoint_down is not None and args.endpoint_down <= 0:
        parser.error("--endpoint-down takes a positive number of seconds")
    try:
        parameters = parse_parameters(args.parameter)
        faults = [Fault.parse(text) for text in args.fault]
    except (ValueError, FaultError) as exc:
        parser.error(str(exc))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)-14s %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:
        # The emulator logs every request and every caught state error; the twin logs the outcome instead.
        for noisy in ("werkzeug", "moto"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
    twin = Twin(TwinSettings(port=args.port, endpoint_port=args.endpoint_port, api_port=args.api_port,
                             auth_port=args.auth_port, review_port=args.review_port, stack_name=args.stack_name,
                             model_dir=args.model_dir, capture_dir=args.capture_dir, parameters=parameters))
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        twin.start()
    except PortInUseError as exc:
        twin.stop()
        make_var, option = PORT_SETTINGS[exc.setting]
        print(f"cannot start the twin: {exc}; choose another with {make_var}=<port> (make) or {option} <port>",
              file=sys.stderr)
        return 1
    except TemplateError as exc:
        twin.stop()
        print(f"cannot start the twin: {exc}", file=sys.stderr)
        return 2
    for fault in faults:
        twin.faults.add(fault)
    if args.endpoint_down:
        twin.take_endpoint_down(args.endpoint_down)
    write_outputs(twin, args.outputs)
    print(banner(twin, args.outputs), flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        print("\nstopping the twin ...", flush=True)
        twin.stop()
        args.outputs.unlink(missing_ok=True)  # what it names is gone with the twin
        print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
