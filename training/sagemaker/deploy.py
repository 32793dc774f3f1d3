"""Deploy a model to a SageMaker endpoint with data capture and target-tracking autoscaling.

Ours: the exported ONNX model (model.onnx + metadata.json) is packed into model.tar.gz together
with code/ (training.sagemaker.handler and the training modules it imports, plus a
requirements.txt) and served by the SageMaker PyTorch inference container. The built-in
algorithm's model.tar.gz is served by its own image as it is. Either way the endpoint answers an
image with the JSON list of class probabilities, which is what the classify Lambda expects.

Hosting resources are created with the plain SageMaker API (CreateModel, CreateEndpointConfig,
CreateEndpoint) and scaling with Application Auto Scaling; the SDK v3 supplies the image URIs.
"""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from ..s3_uri import parse_s3_uri, s3_join
from .context import LaunchError, region_of
from .training_job import BUILTIN_ALGORITHM, PYTORCH_PY_VERSION, PYTORCH_VERSION

VARIANT_NAME = "AllTraffic"
# Our ONNX model needs ~10 ms of one CPU per 32x32 image: the smallest general-purpose instance
# serves it; scale out instead of up.
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
HANDLER_MODULE = "training.sagemaker.handler"
CODE_DIR = "code"
# The inference container (PyTorch 2.6 CPU: Python 3.12 on x86_64) has numpy and Pillow (torchvision's) but
# not onnxruntime. It ships inside the artifact (code/lib, added to sys.path by the handler) rather than in a
# code/requirements.txt, which the toolkit would pip-install at every instance start: slow scale-out, and
# no start at all in a VPC without internet.
VENDORED = ("onnxruntime>=1.20,<2",)
CONTAINER_PYTHON = "3.12"
CONTAINER_PLATFORM = "manylinux_2_28_x86_64"
LIB_DIR = "lib"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
ENDPOINT_NAME_PATTERN = re.compile(r"^[a-z0-9](-*[a-z0-9]){0,62}$")  # as template.yaml allows
TRAINING_DIR = Path(__file__).resolve().parents[1]  # the training package
SOURCE_ROOT = TRAINING_DIR.parent  # code/ mirrors the repository from here: code/training/...


@dataclass
class CaptureSettings:
    destination_uri: str
    sampling_percent: int = 100
    # Types listed here are stored as text; anything else (image/png, image/jpeg) is stored
    # base64-encoded, which is SageMaker's default for binary payloads.
    json_content_types: list[str] = field(default_factory=lambda: ["application/json"])
    csv_content_types: list[str] = field(default_factory=list)


@dataclass
class ScalingSettings:
    min_capacity: int = 1
    max_capacity: int = 3
    target_invocations_per_instance: float = 600.0  # per minute: ~10 requests/s per instance
    scale_in_cooldown: int = 300
    scale_out_cooldown: int = 60


@dataclass
class ServerlessSettings:
    """SageMaker Serverless Inference: billed per request-second of memory, scales to zero (cold starts).

    Provisioned concurrency keeps that many warm and is billed while it is provisioned: the remedy for a cold start
    longer than classify's read timeout (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariantServerlessConfig.html)."""
    memory_mb: int = 2048
    max_concurrency: int = 10
    provisioned_concurrency: int | None = None

    def check(self) -> None:
        if self.memory_mb not in (1024, 2048, 3072, 4096, 5120, 6144):
            raise LaunchError(f"serverless memory is 1024 to 6144 MB in steps of 1024, got {self.memory_mb}")
        if not 1 <= self.max_concurrency <= 200:
            raise LaunchError(f"serverless max concurrency is 1 to 200, got {self.max_concurrency}")
        if self.provisioned_concurrency is not None and not 1 <= self.provisioned_concurrency <= self.max_concurrency:
            raise LaunchError(f"serverless provisioned concurrency is 1 to the max concurrency "
                              f"({self.max_concurrency}), got {self.provisioned_concurrency}")

    def config(self) -> dict:
        config = {"MemorySizeInMB": self.memory_mb, "MaxConcurrency": self.max_concurrency}
        if self.provisioned_concurrency is not None:
            config["ProvisionedConcurrency"] = self.provisioned_concurrency
        return config


@dataclass
class DeployRequest:
    endpoint_name: str
    role: str
    artifact_uri: str  # s3://bucket/prefix: uploaded model.tar.gz goes below it
    model_dir: Path | None = None  # our exported model (model.onnx + metadata.json)
    model_data: str | None = None  # s3://.../model.tar.gz from a training job
    algorithm: str = "pytorch"  # "pytorch" (ours, ONNX in the PyTorch container) | "builtin"
    instance_type: str = DEFAULT_INSTANCE_TYPE
    initial_instance_count: int = 1
    capture: CaptureSettings | None = None
    scaling: ScalingSettings | None = field(default_factory=ScalingSettings)
    wait: bool = True
    serverless: ServerlessSettings | None = None  # instead of instances
    vendored: Path | None = None  # the handler's dependencies, unpacked for the container (default: pip fetches)


# --------------------------------------------------------------------------- packaging


def _module_file(name: str) -> Path | None:
    """The source file of a dotted module name under the repository root (None: not a module of ours)."""
    path = SOURCE_ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def handler_modules(entry: str = HANDLER_MODULE) -> list[Path]:
    """The files the handler needs, relative to the repository root: its module, every training.* module it
    imports (transitively), and the __init__.py of each package on their way."""
    package = TRAINING_DIR.name
    needed: set[Path] = set()
    seen, todo = set(), [entry]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:  # imported names that are not modules (classes, functions) end here
            continue
        seen.add(name)
        parts = name.split(".")
        needed |= {_module_file(".".join(parts[:i])).relative_to(SOURCE_ROOT) for i in range(1, len(parts))}
        needed.add(path.relative_to(SOURCE_ROOT))
        here = parts if path.name == "__init__.py" else parts[:-1]  # the package relative imports start from
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # from .x import y / from ..x import y / from . import x
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                elif node.module and node.module.startswith(package + "."):
                    base = node.module
                else:
                    continue
                todo += [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith(package + ".")]
    return sorted(needed)


def _check_model_dir(model_dir: Path) -> None:
    from ..inference import Classifier, ModelLoadError

    try:  # load it once here: a broken artifact should fail now, not on a paid endpoint
        Classifier.load(model_dir)
    except ModelLoadError as exc:
        raise LaunchError(f"{model_dir} is not a servable model: {exc}") from exc


def vendor_dependencies(target: Path, python_version: str = CONTAINER_PYTHON,
                        platform: str = CONTAINER_PLATFORM) -> Path:
    """VENDORED's wheels for the container's Python and platform, unpacked into ``target`` (pip, from PyPI or
    pip's cache: at packaging time, on the machine that deploys)."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", "--implementation", "cp", "--python-version", python_version,
               "--platform", platform, "--target", str(target), *VENDORED]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise LaunchError(f"cannot fetch {', '.join(VENDORED)} for Python {python_version} ({platform}) to ship in "
                          f"the model: {last}")
    return target


def package_model(model_dir: Path, dest: Path, vendored: Path | None = None) -> Path:
    """model.tar.gz = model_dir's files at the root + code/ (the handler, its modules, and ``vendored``, the
    handler's dependencies for the container's Python, as code/lib; fetched with vendor_dependencies when None)."""
    model_dir = Path(model_dir)
    _check_model_dir(model_dir)
    if vendored is None:
        with tempfile.TemporaryDirectory() as tmp:
            return package_model(model_dir, dest, vendor_dependencies(Path(tmp) / LIB_DIR))
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            rel = path.relative_to(model_dir)
            if path.is_file() and rel.parts[0] != CODE_DIR:
                tar.add(path, arcname=str(rel))
        for relative in handler_modules():
            tar.add(SOURCE_ROOT / relative, arcname=f"{CODE_DIR}/{relative.as_posix()}")
        for path in sorted(Path(vendored).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=f"{CODE_DIR}/{LIB_DIR}/{path.relative_to(vendored)}")
    return dest


def _safe_extract(tar_path: Path, dest: Path) -> None:
    with tarfile.open(tar_path, "r:*") as tar:
        tar.extractall(dest, filter="data")  # refuses absolute paths, .., and links out of dest


def _upload_immutable(boto_session, local: Path, prefix_uri: str) -> str:
    """Upload ``local`` to prefix/<sha256 of its bytes>/<its name>. A model's ModelDataUrl is read again at every
    instance launch and scale-out, so no key that a model may point at is ever written twice: the same bytes
    land at the same key, different bytes at a new one."""
    digest = hashlib.sha256(local.read_bytes()).hexdigest()[:20]
    uri = s3_join(prefix_uri, digest, local.name)
    bucket, key = parse_s3_uri(uri)
    s3 = boto_session.client("s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        s3.upload_file(str(local), bucket, key)
    return uri


def model_artifact(req: DeployRequest, model_name: str, boto_session) -> str:
    """The S3 URI of the model.tar.gz the container will load (packaging ours first)."""
    if req.algorithm == "builtin":
        if not req.model_data:
            raise LaunchError("--algorithm builtin needs --model-data s3://.../model.tar.gz of a training job")
        return req.model_data
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = req.model_dir
        if req.model_data:  # a training job's output: add the serving code to it
            bucket, key = parse_s3_uri(req.model_data)
            s3 = boto_session.client("s3")
            try:
                s3.download_file(bucket, key, str(tmp / "trained.tar.gz"))
            except Exception as exc:  # botocore raises ClientError(404) for a missing object
                raise LaunchError(f"cannot download {req.model_data}: {exc}") from exc
            model_dir = tmp / "trained"
            _safe_extract(tmp / "trained.tar.gz", model_dir)
        if model_dir is None:
            raise LaunchError("pass --model-dir (an exported model) or --model-data (a training job's model.tar.gz)")
        packed = package_model(model_dir, tmp / "model.tar.gz", req.vendored)
        return _upload_immutable(boto_session, packed, s3_join(req.artifact_uri, "models", model_name))


# --------------------------------------------------------------------------- hosting

def _model_exists(sm, model_name: str) -> bool:
    try:
        sm.describe_model(ModelName=model_name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationException":  # "Could not find model"
            return False
        raise
    return True



def container_for(req: DeployRequest, region: str, model_data_url: str) -> dict:
    from sagemaker.core import image_uris

    if req.algorithm == "builtin":
        return {"Image": image_uris.retrieve(BUILTIN_ALGORITHM, region=region), "ModelDataUrl": model_data_url}
    image = image_uris.retrieve("pytorch", region=region, version=PYTORCH_VERSION, py_version=PYTORCH_PY_VERSION,
                                instance_type=req.instance_type, image_scope="inference")
    return {
        "Image": image,
        "ModelDataUrl": model_data_url,
        "Environment": {
            "SAGEMAKER_PROGRAM": HANDLER_MODULE,
            "SAGEMAKER_SUBMIT_DIRECTORY": f"/opt/ml/model/{CODE_DIR}",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "SAGEMAKER_REGION": region,
        },
    }


def data_capture_config(capture: CaptureSettings) -> dict:
    if not 0 <= capture.sampling_percent <= 100:
        raise LaunchError(f"capture sampling must be 0..100 %, got {capture.sampling_percent}")
    parse_s3_uri(capture.destination_uri)
    header = {}
    if capture.json_content_types:
        header["JsonContentTypes"] = list(capture.json_content_types)
    if capture.csv_content_types:
        header["CsvContentTypes"] = list(capture.csv_content_types)
    config = {
        "EnableCapture": True,
        "InitialSamplingPercentage": int(capture.sampling_percent),
        "DestinationS3Uri": capture.destination_uri,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    if header:
        config["CaptureContentTypeHeader"] = header
    return config


def resource_id(endpoint_name: str, variant: str = VARIANT_NAME) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant}"


def policy_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-invocations-per-instance"


def configure_autoscaling(boto_session, endpoint_name: str, scaling: ScalingSettings) -> dict:
    if not 1 <= scaling.min_capacity <= scaling.max_capacity:
        raise LaunchError(f"need 1 <= min capacity <= max capacity, got {scaling.min_capacity}..{scaling.max_capacity}")
    if scaling.target_invocations_per_instance <= 0:
        raise LaunchError("the invocations-per-instance target must be positive")
    client = boto_session.client("application-autoscaling")
    rid = resource_id(endpoint_name)
    client.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=SCALABLE_DIMENSION,
        MinCapacity=scaling.min_capacity, MaxCapacity=scaling.max_capacity)
    client.put_scaling_policy(
        PolicyName=policy_name(endpoint_name), ServiceNamespace="sagemaker", ResourceId=rid,
        ScalableDimension=SCALABLE_DIMENSION, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(scaling.target_invocations_per_instance),
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": scaling.scale_in_cooldown,
            "ScaleOutCooldown": scaling.scale_out_cooldown,
        })
    return {"resource_id": rid, "policy": policy_name(endpoint_name)}


def deploy(req: DeployRequest, boto_session, log=None) -> dict:
    """Create model, endpoint config (with data capture) and endpoint, then autoscaling."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if not ENDPOINT_NAME_PATTERN.match(req.endpoint_name):
        raise LaunchError(f"endpoint name {req.endpoint_name!r} must be lower-case letters, digits and "
                          "hyphens, at most 63 characters (the SAM template's EndpointName pattern)")
    if req.initial_instance_count < 1:
        raise LaunchError("the initial instance count must be at least 1")
    if req.serverless is not None:
        req.serverless.check()
        # AWS: serverless endpoints take no data capture (so no Model Monitor) and scale by themselves.
        if req.capture is not None:
            raise LaunchError("serverless endpoints do not support data capture: pass --no-capture (the drift "
                              "report then has only the results table), or deploy on instances")
        req.scaling = None
    region = region_of(boto_session)
    sm = boto_session.client("sagemaker")
    model_name = config_name = req.endpoint_name
    if _model_exists(sm, model_name):
        raise LaunchError(f"a SageMaker model named {model_name!r} exists already (the live endpoint's?); nothing was "
                          f"changed. Tear it down first (teardown --endpoint-name {req.endpoint_name}) or deploy "
                          "under another endpoint name")
    log(f"packaging and uploading the model for {model_name}")
    model_data_url = model_artifact(req, model_name, boto_session)
    sm.create_model(ModelName=model_name, ExecutionRoleArn=req.role,
                    PrimaryContainer=container_for(req, region, model_data_url))
    log(f"created model {model_name}")
    variant = {"VariantName": VARIANT_NAME, "ModelName": model_name, "InitialVariantWeight": 1.0}
    if req.serverless is not None:
        variant["ServerlessConfig"] = req.serverless.config()
    else:
        variant |= {"InitialInstanceCount": req.initial_instance_count, "InstanceType": req.instance_type}
    config = {"EndpointConfigName": config_name, "ProductionVariants": [variant]}
    if req.capture is not None:
        config["DataCaptureConfig"] = data_capture_config(req.capture)
    sm.create_endpoint_config(**config)
    log(f"created endpoint config {config_name}")
    sm.create_endpoint(EndpointName=req.endpoint_name, EndpointConfigName=config_name)
    log(f"creating endpoint {req.endpoint_name} (takes several minutes)")
    result = {"endpoint_name": req.endpoint_name, "model_name": model_name,
              "endpoint_config_name": config_name, "model_data": model_data_url}
    if req.wait or req.scaling is not None:
        # Application Auto Scaling only accepts a variant of an InService endpoint.
        sm.get_waiter("endpoint_in_service").wait(EndpointName=req.endpoint_name,
                                                  WaiterConfig={"Delay": 30, "MaxAttempts": 60})
        log(f"endpoint {req.endpoint_name} is InService")
    if req.scaling is not None:
        result["autoscaling"] = configure_autoscaling(boto_session, req.endpoint_name, req.scaling)
        log(f"autoscaling {req.scaling.min_capacity}..{req.scaling.max_capacity} instances on "
            f"{req.scaling.target_invocations_per_instance:g} invocations/instance/minute")
    return result


def sam_deploy_line(endpoint_name: str) -> str:
    return f"sam deploy --parameter-overrides EndpointName={endpoint_name}"
