"""Model Monitor for the endpoint (SDK v3 DefaultModelMonitor): a baseline job + an hourly schedule.

The baseline is the model's output on the validation hold-out of the train split
(stage_data's holdout/validation.lst; never the test split), profiled by a baselining
processing job into statistics.json + constraints.json. The hourly schedule then profiles the
endpoint's captured answers with `monitor_record.preprocess_handler` and reports
violations of those constraints (drift of class probabilities / confidence).
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from ..s3_uri import s3_join
from .context import LaunchError, sagemaker_session
from .monitor_record import CLASSES_ENV, features

# "Amazon SageMaker Model Monitor is no longer open to new customers. Existing customers can continue to use the
# service as normal" (every Model Monitor page of the developer guide). The drift report reads the same data capture.
AVAILABILITY_PAGE = "https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-availability-change.html"
CLOSED_TO_NEW_CUSTOMERS = (
    f"SageMaker Model Monitor is no longer open to new customers ({AVAILABILITY_PAGE}); accounts that have it can go "
    "on using it. Without it, run the drift report over the endpoint's data capture: python -m monitoring --capture "
    "s3://<bucket>/<capture prefix> --results-table <ResultsTableName> (docs/monitoring.md)")
RECORD_SCRIPT = Path(__file__).resolve().parent / "monitor_record.py"
# Model Monitor's analyser on tabular features of a few thousand records: the smallest
# instance type it supports is plenty.
DEFAULT_MONITOR_INSTANCE = "ml.m5.xlarge"


@dataclass
class MonitorRequest:
    endpoint_name: str
    role: str
    s3_uri: str  # s3://bucket/prefix for the baseline dataset, results and reports
    classes: list[str]
    baseline_csv: Path | str  # local CSV (uploaded by the SDK) or an s3:// URI
    instance_type: str = DEFAULT_MONITOR_INSTANCE
    schedule_name: str | None = None
    cron: str | None = None  # default: hourly
    wait_for_baseline: bool = True


def write_baseline_csv(model_dir: Path, staged: Path, dest: Path, progress=None) -> tuple[Path, list[str]]:
    """Run the model over the staged validation hold-out; one CSV row of features per image."""
    from ..inference import Classifier
    from ..stage_data import HOLDOUT_DIR, read_lst

    stream = progress if progress is not None else sys.stderr
    lst = Path(staged) / HOLDOUT_DIR / "validation.lst"
    if not lst.is_file():
        raise LaunchError(f"{lst} not found: stage the data first (python -m training stage-data)")
    rows = read_lst(lst)
    clf = Classifier.load(model_dir)
    dest = Path(dest)
    with open(dest, "w", newline="") as fh:
        writer = None
        for count, row in enumerate(rows, start=1):
            record = features(clf.predict((Path(staged) / "train" / row.relative_path).read_bytes()), clf.classes)
            if writer is None:
                writer = csv.DictWriter(fh, fieldnames=list(record))
                writer.writeheader()
            writer.writerow(record)
            if count % 50 == 0 or count == len(rows):
                stream.write(f"\rbaseline: scored {count}/{len(rows)} validation images")
                stream.flush()
    stream.write("\n")
    return dest, list(clf.classes)


def schedule_name_for(endpoint_name: str) -> str:
    return f"{endpoint_name}-data-quality"[:63]


def baseline_uri_for(req: MonitorRequest) -> str:
    return s3_join(req.s3_uri, "monitoring", req.endpoint_name, "baseline")


def _monitor(req: MonitorRequest, boto_session):
    from sagemaker.core.model_monitor import DefaultModelMonitor

    if not req.classes:
        raise LaunchError("the monitored model's class names are needed (--classes or the model's metadata.json)")
    return DefaultModelMonitor(
        role=req.role, instance_count=1, instance_type=req.instance_type, volume_size_in_gb=20,
        max_runtime_in_seconds=3600, base_job_name=f"{req.endpoint_name}-baseline"[:50],
        sagemaker_session=sagemaker_session(boto_session, req.s3_uri),
        # The record preprocessor runs in the monitoring job and reads the class names from here.
        env={CLASSES_ENV: ",".join(req.classes)})


def create(req: MonitorRequest, boto_session, log=None) -> dict:
    """Run the baselining job, then create the monitoring schedule on the endpoint."""
    from sagemaker.core.model_monitor import DatasetFormat

    log = log or (lambda msg: print(msg, file=sys.stderr))
    monitor = _monitor(req, boto_session)
    baseline_uri = baseline_uri_for(req)
    log(f"baselining job on {req.baseline_csv} -> {baseline_uri}")
    job = monitor.suggest_baseline(
        baseline_dataset=str(req.baseline_csv), dataset_format=DatasetFormat.csv(header=True),
        output_s3_uri=baseline_uri, wait=False, logs=False)
    name = job.processing_job_name
    result = {"baseline_job_name": name, "baseline_uri": baseline_uri}
    if not req.wait_for_baseline:
        # The schedule needs the job's statistics.json/constraints.json, which exist only after it ends.
        log("not waiting for the baseline: run `monitor --skip-baseline` once it has completed")
        return result
    log(f"waiting for baselining job {name} (typically 5-10 minutes)")
    sm = boto_session.client("sagemaker")
    sm.get_waiter("processing_job_completed_or_stopped").wait(
        ProcessingJobName=name, WaiterConfig={"Delay": 30, "MaxAttempts": 120})
    described = sm.describe_processing_job(ProcessingJobName=name)
    if described["ProcessingJobStatus"] != "Completed":
        raise LaunchError(f"baselining job {name} ended {described['ProcessingJobStatus']}: "
                          f"{described.get('FailureReason', 'no reason given')}")
    return {**result, **create_schedule(req, boto_session, monitor=monitor, log=log)}


def create_schedule(req: MonitorRequest, boto_session, monitor=None, log=None) -> dict:
    """Create the hourly data-quality schedule from a finished baseline."""
    from sagemaker.core.model_monitor import CronExpressionGenerator

    log = log or (lambda msg: print(msg, file=sys.stderr))
    monitor = monitor or _monitor(req, boto_session)
    baseline_uri = baseline_uri_for(req)
    name = req.schedule_name or schedule_name_for(req.endpoint_name)
    reports_uri = s3_join(req.s3_uri, "monitoring", req.endpoint_name, "reports")
    monitor.create_monitoring_schedule(
        endpoint_input=req.endpoint_name,
        record_preprocessor_script=str(RECORD_SCRIPT),
        output_s3_uri=reports_uri,
        statistics=s3_join(baseline_uri, "statistics.json"),
        constraints=s3_join(baseline_uri, "constraints.json"),
        monitor_schedule_name=name,
        schedule_cron_expression=req.cron or CronExpressionGenerator.hourly(),
        enable_cloudwatch_metrics=True,
    )
    log(f"monitoring schedule {name} -> {reports_uri}")
    return {"schedule_name": name, "job_definition_name": monitor.job_definition_name, "reports_uri": reports_uri}
