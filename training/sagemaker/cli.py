"""Train, deploy, monitor and tear down the classifier on SageMaker (SDK v3).

    python -m training sagemaker train --algorithm builtin --data-uri s3://B/scones/data --output-uri s3://B/scones
    python -m training sagemaker train --algorithm pytorch --data-uri s3://B/scones/data --output-uri s3://B/scones
    python -m training sagemaker deploy --model-dir training/model --artifact-uri s3://B/scones
    python -m training sagemaker monitor --endpoint-name NAME --s3-uri s3://B/scones
        (Model Monitor: existing customers)
    python -m training sagemaker teardown --endpoint-name NAME
    python -m training sagemaker register --endpoint-name NAME --model-dir build/model \\
        --gate-result build/gate.json --artifact-uri s3://B/scones
    python -m training sagemaker update --endpoint-name NAME --model-package ARN --stack STACK
    python -m training sagemaker promote --endpoint-name NAME --challenger build/model \\
        --artifact-uri s3://B/scones --stack STACK
    python -m training sagemaker rollback --endpoint-name NAME

The role comes from --role or $SAGEMAKER_ROLE_ARN, the region from the standard AWS configuration
(AWS_DEFAULT_REGION or ~/.aws/config; boto3 does not read AWS_REGION). The SageMaker SDK is imported only by the
command that runs, so --help stays quick and nothing here reaches the Lambda functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import gate
from ..inference import DEFAULT_MODEL_DIR
from ..s3_uri import S3UriError, s3_join
from .context import LaunchError, resolve_role, unique_name

VENDORED_HELP = ("a folder with the handler's dependencies (onnxruntime) unpacked for the container's Python 3.12 "
                 "on x86_64, shipped in the model (default: pip fetches them while packaging)")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training sagemaker",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def with_role(p):
        p.add_argument("--role", help="SageMaker execution role ARN (default: $SAGEMAKER_ROLE_ARN)")
        return p

    train = with_role(sub.add_parser("train", help="start a training job"))
    train.add_argument("--algorithm", choices=("builtin", "pytorch"), required=True,
                       help="builtin image-classification algorithm, or training/train.py on the PyTorch image")
    train.add_argument("--data-uri", required=True, help="s3:// prefix written by `stage_data --s3-uri`")
    train.add_argument("--output-uri", required=True, help="s3:// prefix for model artifacts")
    train.add_argument("--reviewed-uri", help="pytorch only: s3:// prefix of reviewers' labels ({class}/*.png, "
                                              "`stage_data --from-manifest`), added to the training part only")
    train.add_argument("--instance-type", help="default: ml.g4dn.xlarge (builtin, GPU only) / ml.m5.xlarge (pytorch)")
    train.add_argument("--instance-count", type=int, default=1)
    train.add_argument("--epochs", type=int, help="default: 30 (builtin) / train.py's default (pytorch)")
    train.add_argument("--hyperparameter", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="extra or overriding hyper-parameter (repeatable)")
    train.add_argument("--max-run-hours", type=float, default=3.0)
    train.add_argument("--job-name-prefix", help="base name of the training job")
    train.add_argument("--wait", action="store_true", help="wait for the job and stream its logs")

    deploy = with_role(sub.add_parser("deploy", help="create an endpoint with data capture and autoscaling"))
    deploy.add_argument("--algorithm", choices=("pytorch", "builtin"), default="pytorch",
                        help="pytorch: our ONNX model in the PyTorch inference container (default); "
                             "builtin: a built-in image-classification model")
    source = deploy.add_mutually_exclusive_group()
    source.add_argument("--model-dir", type=Path,
                        help="exported model folder (model.onnx + metadata.json); default: training/model")
    source.add_argument("--model-data", help="s3://.../model.tar.gz of a training job")
    deploy.add_argument("--artifact-uri", required=True, help="s3:// prefix for the packed model and captured data")
    deploy.add_argument("--endpoint-name", help="default: scones-classifier-<UTC timestamp>")
    deploy.add_argument("--instance-type", default=None, help="default: ml.m5.large")
    deploy.add_argument("--initial-instance-count", type=int, default=1)
    deploy.add_argument("--capture-uri", help="data capture destination (default: <artifact-uri>/datacapture)")
    deploy.add_argument("--capture-percent", type=int, default=100, help="share of requests captured (default 100)")
    deploy.add_argument("--capture-json-types", type=_csv_list, default=["application/json"],
                        help="content types captured as JSON text (others, e.g. image/png and image/jpeg, "
                             "are captured base64-encoded); default: application/json")
    deploy.add_argument("--no-capture", action="store_true", help="disable data capture")
    deploy.add_argument("--min-capacity", type=int, default=1)
    deploy.add_argument("--max-capacity", type=int, default=3)
    deploy.add_argument("--target-invocations", type=float, default=600.0,
                        help="target SageMakerVariantInvocationsPerInstance (per minute, default 600)")
    deploy.add_argument("--scale-in-cooldown", type=int, default=300, help="seconds (default 300)")
    deploy.add_argument("--scale-out-cooldown", type=int, default=60, help="seconds (default 60)")
    deploy.add_argument("--no-autoscaling", action="store_true")
    deploy.add_argument("--serverless-memory-mb", type=int,
                        help="Serverless Inference with this memory (1024..6144) instead of instances: no data "
                             "capture, no autoscaling to set up, cold starts (docs/sagemaker.md, cost)")
    deploy.add_argument("--serverless-max-concurrency", type=int, default=10)
    deploy.add_argument("--serverless-provisioned-concurrency", type=int,
                        help="keep this many serverless instances warm (billed while provisioned): for a model whose "
                             "cold start outlasts the classify function's 5 s read timeout")
    deploy.add_argument("--vendored", type=Path, help=VENDORED_HELP)
    deploy.add_argument("--no-wait", action="store_true",
                        help="return once the endpoint is being created (implies --no-autoscaling)")

    monitor = with_role(sub.add_parser(
        "monitor", help="Model Monitor baseline job + hourly schedule (closed to new customers: see --help)",
        description="Model Monitor for the endpoint: a baseline job, then an hourly data-quality schedule. "
                    "SageMaker Model Monitor is no longer open to new customers "
                    "(https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-availability-change.html); "
                    "accounts that have it can go on using this command. Everyone else: python -m monitoring "
                    "--capture s3://<bucket>/<capture prefix> --results-table <table>, the drift report over the "
                    "endpoint's data capture (docs/monitoring.md)."))
    monitor.add_argument("--endpoint-name", required=True)
    monitor.add_argument("--s3-uri", required=True, help="s3:// prefix for the baseline and the reports")
    monitor.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                         help="the deployed model, to score the baseline and name the classes "
                              "(default: training/model)")
    monitor.add_argument("--staged", type=Path, default=Path("data/staged"),
                         help="stage_data output; its validation hold-out is the baseline (default: data/staged)")
    monitor.add_argument("--baseline-csv", help="use this features CSV (local or s3://) instead of scoring --staged")
    monitor.add_argument("--classes", type=_csv_list, help="class names in output order (default: the model's)")
    monitor.add_argument("--instance-type", default=None, help="default: ml.m5.xlarge")
    monitor.add_argument("--cron", help="schedule expression (default: hourly)")
    monitor.add_argument("--no-wait", action="store_true",
                         help="start the baseline job and return; create the schedule later with --skip-baseline")
    monitor.add_argument("--skip-baseline", action="store_true",
                         help="only create the schedule, from a baseline that has completed")

    register = sub.add_parser("register", help="a new model version in the endpoint's Model Registry group")
    register.add_argument("--endpoint-name", required=True, help="the live endpoint; the group is <name>-models")
    register.add_argument("--model-dir", type=Path, required=True, help="the exported candidate, e.g. build/model")
    register.add_argument("--artifact-uri", required=True, help="s3:// prefix for the packed model and the comparison")
    register.add_argument("--gate-result", type=Path,
                          help="training.gate's JSON: accepted registers Approved, refused Rejected "
                               "(default: none, PendingManualApproval)")
    register.add_argument("--instance-type", default=None, help="default: ml.m5.large")
    register.add_argument("--vendored", type=Path, help=VENDORED_HELP)

    update = with_role(sub.add_parser(
        "update", help="move the live endpoint to an Approved version: canary or all at once, a bake, auto-rollback"))
    update.add_argument("--endpoint-name", required=True)
    update.add_argument("--model-package", required=True, help="the version's ARN (from register)")
    _rollout_arguments(update)

    promote = with_role(sub.add_parser(
        "promote", help="gate a candidate against the live model, register it, and update to it if it passed",
        description="The whole safe update: the live model is downloaded from the endpoint and compared with the "
                    "challenger (training.gate); the challenger is registered Approved or Rejected with the "
                    "comparison; only an approved one goes on to the update (as `update` does it). Exit 3: refused."))
    promote.add_argument("--endpoint-name", required=True)
    gate.add_arguments(promote, champion=False)
    promote.add_argument("--artifact-uri", required=True, help="s3:// prefix for the packed model and the comparison")
    promote.add_argument("--instance-type", default=None, help="default: ml.m5.large")
    promote.add_argument("--vendored", type=Path, help=VENDORED_HELP)
    _rollout_arguments(promote)

    back = with_role(sub.add_parser("rollback", help="return the endpoint to the previous Approved version"))
    back.add_argument("--endpoint-name", required=True)

    teardown = sub.add_parser("teardown", help="delete the endpoint and everything deploy/monitor made for it")
    teardown.add_argument("--endpoint-name", required=True)
    return parser


def _rollout_arguments(parser: argparse.ArgumentParser) -> None:
    """How update and promote move the endpoint: the traffic shift, the bake, what rolls it back."""
    alarms = parser.add_mutually_exclusive_group()
    alarms.add_argument("--stack", help="the SAM stack whose EndpointErrorsAlarm also rolls the update back (promote "
                                         "also sets its ConfidenceThreshold to the promoted model's threshold)")
    alarms.add_argument("--alarm", action="append", default=[],
                        help="an alarm that also rolls the update back (repeatable); the new fleet's errors and "
                             "latency alarms always do")
    parser.add_argument("--canary-percent", type=int,
                        help="capacity that takes traffic first, 1 to 50 (default: 10 on a variant of 2 or more "
                             "instances; on one instance, all at once: a canary is at most half the variant)")
    parser.add_argument("--bake-minutes", type=int, default=30,
                        help="minutes the new fleet is watched before the rest shifts or the old fleet goes, 0 to 60 "
                             "(default 30)")
    parser.add_argument("--termination-wait-minutes", type=int, default=10,
                        help="minutes the old fleet stays after the shift, for a fast rollback, 0 to 60 (default 10)")
    parser.add_argument("--max-latency-ms", type=int, default=1000,
                        help="the new fleet's p99 model latency above this rolls back (default 1000)")


def _rollout(args, boto_session):
    """(settings, alarms) of update/promote's arguments."""
    from .rollout import CanarySettings, stack_alarm_names

    canary = CanarySettings(percent=args.canary_percent, bake_seconds=args.bake_minutes * 60,
                            termination_wait_seconds=args.termination_wait_minutes * 60,
                            max_latency_ms=args.max_latency_ms)
    canary.check()
    return canary, stack_alarm_names(boto_session, args.stack) if args.stack else args.alarm


def _print_json(result: dict) -> None:
    print(json.dumps(result, indent=2, default=str))


def run_train(args, boto_session) -> None:
    from .training_job import TrainRequest, launch

    req = TrainRequest(
        algorithm=args.algorithm, data_uri=args.data_uri, output_uri=args.output_uri,
        role=resolve_role(args.role), instance_type=args.instance_type, instance_count=args.instance_count,
        max_run_seconds=int(args.max_run_hours * 3600), epochs=args.epochs,
        hyperparameters=dict(args.hyperparameter), base_job_name=args.job_name_prefix, wait=args.wait,
        reviewed_uri=args.reviewed_uri)
    if args.reviewed_uri and args.algorithm != "pytorch":
        raise LaunchError("--reviewed-uri needs --algorithm pytorch (the built-in algorithm reads .lst channels only)")
    result = launch(req, boto_session)
    _print_json(result)
    print(f"\nnext: python -m training sagemaker deploy --algorithm {args.algorithm} "
          f"--model-data {result['model_data']} --artifact-uri {args.output_uri}")


def run_deploy(args, boto_session) -> None:
    from .deploy import (DEFAULT_INSTANCE_TYPE, CaptureSettings, DeployRequest, ScalingSettings,
                                   ServerlessSettings, deploy, sam_deploy_line)

    if args.serverless_provisioned_concurrency is not None and not args.serverless_memory_mb:
        raise LaunchError("--serverless-provisioned-concurrency is for a serverless endpoint: "
                          "add --serverless-memory-mb")
    endpoint = args.endpoint_name or unique_name("scones-classifier")
    capture = None
    if not args.no_capture:
        capture = CaptureSettings(destination_uri=args.capture_uri or s3_join(args.artifact_uri, "datacapture"),
                                  sampling_percent=args.capture_percent,
                                  json_content_types=args.capture_json_types)
    scaling = None
    if not (args.no_autoscaling or args.no_wait):
        scaling = ScalingSettings(min_capacity=args.min_capacity, max_capacity=args.max_capacity,
                                  target_invocations_per_instance=args.target_invocations,
                                  scale_in_cooldown=args.scale_in_cooldown,
                                  scale_out_cooldown=args.scale_out_cooldown)
    model_dir = args.model_dir
    if model_dir is None and args.model_data is None and args.algorithm == "pytorch":
        model_dir = DEFAULT_MODEL_DIR
    req = DeployRequest(
        endpoint_name=endpoint, role=resolve_role(args.role), artifact_uri=args.artifact_uri,
        model_dir=model_dir, model_data=args.model_data, algorithm=args.algorithm,
        instance_type=args.instance_type or DEFAULT_INSTANCE_TYPE,
        initial_instance_count=args.initial_instance_count, capture=capture, scaling=scaling,
        wait=not args.no_wait,
        serverless=(ServerlessSettings(args.serverless_memory_mb, args.serverless_max_concurrency,
                                       args.serverless_provisioned_concurrency)
                    if args.serverless_memory_mb else None),
        vendored=args.vendored)
    result = deploy(req, boto_session)
    _print_json(result)
    print(f"\nendpoint: {endpoint}\nhand it to the stack:\n  {sam_deploy_line(endpoint)}")


def _model_classes(model_dir: Path) -> list[str]:
    meta = Path(model_dir) / "metadata.json"
    if not meta.is_file():
        raise LaunchError(f"no metadata.json in {model_dir}: pass --classes")
    return list(json.loads(meta.read_text())["classes"])


def run_monitor(args, boto_session) -> None:
    import tempfile

    from botocore.exceptions import ClientError

    from .monitor import (CLOSED_TO_NEW_CUSTOMERS, DEFAULT_MONITOR_INSTANCE, MonitorRequest, create, create_schedule,
                          write_baseline_csv)

    print(f"note: {CLOSED_TO_NEW_CUSTOMERS}", file=sys.stderr, flush=True)
    role = resolve_role(args.role)
    classes = args.classes or _model_classes(args.model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = args.baseline_csv
        if baseline is None and not args.skip_baseline:
            baseline, classes = write_baseline_csv(args.model_dir, args.staged, Path(tmp) / "baseline.csv")
        req = MonitorRequest(endpoint_name=args.endpoint_name, role=role, s3_uri=args.s3_uri, classes=classes,
                             baseline_csv=baseline, instance_type=args.instance_type or DEFAULT_MONITOR_INSTANCE,
                             cron=args.cron, wait_for_baseline=not args.no_wait)
        try:
            result = create_schedule(req, boto_session) if args.skip_baseline else create(req, boto_session)
        except ClientError as exc:  # e.g. an account Model Monitor is not open to
            raise LaunchError(f"AWS refused: {' '.join(str(exc).split())}. {CLOSED_TO_NEW_CUSTOMERS}") from None
    _print_json(result)


def run_register(args, boto_session) -> None:
    from .deploy import DEFAULT_INSTANCE_TYPE, DeployRequest
    from .rollout import register

    req = DeployRequest(endpoint_name=args.endpoint_name, role="", artifact_uri=args.artifact_uri,
                        model_dir=args.model_dir, instance_type=args.instance_type or DEFAULT_INSTANCE_TYPE,
                        vendored=args.vendored)
    result = register(req, boto_session, gate_result=args.gate_result)
    _print_json(result)
    if result["status"] == "Approved":
        print(f"\nnext: python -m training sagemaker update --endpoint-name {args.endpoint_name} "
              f"--model-package {result['model_package_arn']} --stack <stack>")


def run_update(args, boto_session) -> None:
    from .rollout import update

    canary, alarms = _rollout(args, boto_session)
    _print_json(update(args.endpoint_name, args.model_package, resolve_role(args.role), boto_session, canary, alarms))


def run_promote(args, boto_session) -> int:
    import tempfile

    from .deploy import DEFAULT_INSTANCE_TYPE, DeployRequest
    from . import rollback_alarms
    from .rollout import live_model_dir, register, set_stack_threshold, update

    canary, alarms = _rollout(args, boto_session)
    # A firing or blind rollback alarm would refuse the update: say so before the gate and the registry run.
    rollback_alarms.check(boto_session.client("cloudwatch"), alarms, canary.bake_seconds)
    with tempfile.TemporaryDirectory() as tmp:
        champion = live_model_dir(boto_session, args.endpoint_name, Path(tmp) / "live")
        try:
            comparison = gate.run(args, champion)
        except (gate.DatasetError, gate.ModelLoadError, gate.thresholds.MissingThresholdError,
                FileNotFoundError) as exc:
            raise LaunchError(str(exc)) from None
        print(gate.render(comparison))
        gate_json = Path(tmp) / "gate.json"
        gate_json.write_text(json.dumps(comparison, indent=2) + "\n")
        req = DeployRequest(endpoint_name=args.endpoint_name, role="", artifact_uri=args.artifact_uri,
                            model_dir=args.challenger, instance_type=args.instance_type or DEFAULT_INSTANCE_TYPE,
                            vendored=args.vendored)
        registered = register(req, boto_session, gate_result=gate_json)
    if not comparison["accepted"]:
        print(f"refused: {registered['model_package_arn']} is registered Rejected; the endpoint is unchanged",
              file=sys.stderr)
        return gate.EXIT_REFUSED
    _print_json(update(args.endpoint_name, registered["model_package_arn"], resolve_role(args.role), boto_session,
                       canary, alarms))
    # the threshold travels with the model: the stack's ConfidenceThreshold becomes the promoted model's
    value = comparison["thresholds"]["challenger"]
    if args.stack:
        _print_json(set_stack_threshold(boto_session, args.stack, value))
    else:
        print(f"no --stack: set the promoted model's threshold on your stack yourself: "
              f"sam deploy --parameter-overrides ConfidenceThreshold={value:g} (keep the other overrides)",
              file=sys.stderr)
    return 0


def run_rollback(args, boto_session) -> None:
    from .rollout import rollback

    _print_json(rollback(args.endpoint_name, resolve_role(args.role), boto_session))


def run_teardown(args, boto_session) -> None:
    from .teardown import teardown

    teardown(args.endpoint_name, boto_session)


COMMANDS = {"train": run_train, "deploy": run_deploy, "monitor": run_monitor, "register": run_register,
            "update": run_update, "promote": run_promote, "rollback": run_rollback, "teardown": run_teardown}


def main(argv: list[str] | None = None, boto_session=None) -> int:
    args = build_parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError

    from ..stage_data import StageDataError

    try:
        if boto_session is None:
            import boto3

            boto_session = boto3.Session()
        code = COMMANDS[args.command](args, boto_session)
    except (LaunchError, S3UriError, StageDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WaiterError as exc:
        print(f"error: {exc} (see the SageMaker console / CloudWatch logs for the reason)", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"error: AWS refused: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # The SageMaker SDK's own errors (a job that failed or timed out while --wait follows it, a request
        # the SDK rejects) carry the reason in their message; the SDK is imported only by the commands.
        if not type(exc).__module__.startswith("sagemaker."):
            raise
        print(f"error: SageMaker: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
