"""`make local`: run the twin in the foreground until Ctrl-C; `python -m local demo|benchmark` for the rest.

    python -m local [--port P] [--fault ...] [--endpoint-down S]   # the twin, until Ctrl-C (make local)
    python -m local demo [--images DIR] [--shift dark]            # the main job end to end (make demo)
    python -m local benchmark [--bursts 300 1000]                 # throughput and latency (make benchmark-twin)

Upload with the stock AWS CLI, boto3 or `python -m client submit` against the printed endpoint URL; each
execution's progress shows in this log; outcomes land in the results table (`make results` prints it).
The twin keeps everything in memory: stopping it forgets every object, record and message.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from pathlib import Path

from client.target import REVIEW_PAGE_PORT, TWIN_ENDPOINT_PORT, TWIN_PORT
from local.faults import Fault, FaultError
from local.template import TemplateError
from local.twin import CREDENTIALS, REGION, ROOT, PortInUseError, Twin, TwinSettings

# How a user moves each port, from make and from this command.
PORT_SETTINGS = {"port": ("PORT", "--port"), "endpoint_port": ("ENDPOINT_PORT", "--endpoint-port")}


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--parameter takes Key=Value, got {pair!r}")
        parameters[key] = value
    return parameters


def banner(twin: Twin) -> str:
    out, url, port = twin.outputs, twin.url, twin.settings.port
    env = " ".join(f"{k}={v}" for k, v in CREDENTIALS.items() if k != "AWS_SESSION_TOKEN")
    make_port = "" if port == TWIN_PORT else f" PORT={port}"
    return f"""
Local twin of stack {twin.deployment.stack.name} is running (state is in memory: Ctrl-C forgets it).
  AWS endpoint (S3, EventBridge, Step Functions, DynamoDB, SQS): {url}
  SageMaker endpoint {twin.endpoint_name!r}: {twin.endpoint.url}
  intake bucket:   {out['IntakeBucketName']}
  results table:   {out['ResultsTableName']}
  review queue:    {out['ReviewQueueUrl']}
  ground truth:    {out['GroundTruthBucketName']}

Resolve the photos the model is unsure of (and the audit sample) on the review page:
  make review{make_port}    # then open http://127.0.0.1:{REVIEW_PAGE_PORT}/  (REVIEW_PORT moves it)

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


# python -m local COMMAND: the twin's other jobs, each its module's main()
COMMANDS = {"demo": "local.demo", "benchmark": "local.benchmark"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    return run_twin(argv)


def run_twin(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local", description=__doc__.splitlines()[0],
        epilog="other commands: python -m local demo --help, python -m local benchmark --help")
    parser.add_argument("--port", type=int, default=TWIN_PORT,
                        help=f"port of the emulated AWS services (default {TWIN_PORT})")
    parser.add_argument("--endpoint-port", type=int, default=TWIN_ENDPOINT_PORT,
                        help=f"port of the local SageMaker endpoint (default {TWIN_ENDPOINT_PORT}; 0 = any)")
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
    twin = Twin(TwinSettings(port=args.port, endpoint_port=args.endpoint_port, stack_name=args.stack_name,
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
    print(banner(twin), flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        print("\nstopping the twin ...", flush=True)
        twin.stop()
        print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
