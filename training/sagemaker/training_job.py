"""SageMaker training jobs with the SDK v3 ModelTrainer, on data staged by training.stage_data.

- builtin: the built-in image-classification algorithm on the .lst channels
  (train, validation, train_lst, validation_lst; all application/x-image).
- pytorch: training/train.py in script mode on the SageMaker PyTorch training image, with the
  train and validation channels (folders of {class}/*.png).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..s3_uri import parse_s3_uri, s3_join
from .context import LaunchError, region_of, sagemaker_session

BUILTIN_ALGORITHM = "image-classification"
BUILTIN_CHANNELS = ("train", "validation", "train_lst", "validation_lst")
BUILTIN_CONTENT_TYPE = "application/x-image"
# The built-in image-classification algorithm trains on GPU instances only; g4dn.xlarge is the
# cheapest type it supports.
DEFAULT_BUILTIN_INSTANCE = "ml.g4dn.xlarge"
# Our network is small and the data set is 1,000 32x32 images: a 4-vCPU CPU instance trains it
# in minutes and costs a fraction of a GPU instance.
DEFAULT_PYTORCH_INSTANCE = "ml.m5.xlarge"
PYTORCH_VERSION = "2.6"
PYTORCH_PY_VERSION = "py312"
TRAINING_DIR = Path(__file__).resolve().parents[1]  # the training package: train.py and the modules it imports
# Not code the job runs: the shipped model, caches, and these SageMaker operations (the job runs train.py with
# training/ first on sys.path, where this folder would stand in for the SageMaker SDK's own `sagemaker`).
SOURCE_IGNORE = ["model", "sagemaker", "__pycache__", "*.pyc", ".pytest_cache"]


@dataclass
class TrainRequest:
    algorithm: str  # "builtin" | "pytorch"
    data_uri: str  # s3://bucket/prefix written by `stage_data --s3-uri`
    output_uri: str  # s3://bucket/prefix for model artifacts (and SDK-staged code)
    role: str
    instance_type: str | None = None
    instance_count: int = 1
    volume_gb: int = 30
    max_run_seconds: int = 3 * 3600
    epochs: int | None = None
    hyperparameters: dict[str, str] = field(default_factory=dict)  # explicit overrides
    base_job_name: str | None = None
    wait: bool = False
    reviewed_uri: str | None = None  # reviewers' labels ({class}/*.png): train.py's `reviewed` channel


def builtin_hyperparameters(num_training_samples: int, num_classes: int, epochs: int) -> dict[str, str]:
    """Explicit hyper-parameters for the built-in algorithm on 32x32 CIFAR images."""
    return {
        "image_shape": "3,32,32",
        "num_classes": str(num_classes),
        "num_training_samples": str(num_training_samples),
        "epochs": str(epochs),
        "mini_batch_size": "32",
        "learning_rate": "0.001",
        "optimizer": "adam",
        "use_pretrained_model": "1",  # transfer learning: 800 images are too few from scratch
        "num_layers": "18",
        "augmentation_type": "crop_color_transform",
        "precision_dtype": "float32",
        "early_stopping": "True",  # the algorithm documents True or False
        "early_stopping_patience": "5",
    }


def count_lst(boto_session, lst_uri: str) -> tuple[int, int]:
    """(rows, distinct labels) of an .lst file on S3."""
    bucket, key = parse_s3_uri(lst_uri)
    s3 = boto_session.client("s3")
    try:
        text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    except s3.exceptions.NoSuchKey:
        raise LaunchError(f"{lst_uri} does not exist; stage and upload first "
                          "(python -m training stage-data --s3-uri ...)") from None
    rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    if not rows or any(len(r) != 3 for r in rows):
        raise LaunchError(f"{lst_uri} is not an .lst file (index<TAB>label<TAB>path per line)")
    return len(rows), len({r[1] for r in rows})


def build_trainer(req: TrainRequest, boto_session):
    """(ModelTrainer, input channels) for req; nothing is created in AWS yet."""
    from sagemaker.core import image_uris
    from sagemaker.train import ModelTrainer
    from sagemaker.core.training.configs import Compute, InputData, OutputDataConfig, SourceCode, StoppingCondition

    region = region_of(boto_session)
    session = sagemaker_session(boto_session, req.output_uri)
    compute_kw = dict(instance_count=req.instance_count, volume_size_in_gb=req.volume_gb)
    common = dict(
        sagemaker_session=session,
        role=req.role,
        stopping_condition=StoppingCondition(max_runtime_in_seconds=req.max_run_seconds),
        output_data_config=OutputDataConfig(s3_output_path=s3_join(req.output_uri, "models")),
    )
    if req.algorithm == "builtin":
        samples, classes = count_lst(boto_session, s3_join(req.data_uri, "train_lst", "train.lst"))
        count_lst(boto_session, s3_join(req.data_uri, "validation_lst", "validation.lst"))
        hps = builtin_hyperparameters(samples, classes, req.epochs or 30)
        hps.update({str(k): str(v) for k, v in req.hyperparameters.items()})
        trainer = ModelTrainer(
            training_image=image_uris.retrieve(BUILTIN_ALGORITHM, region=region),
            base_job_name=req.base_job_name or "scones-builtin",
            compute=Compute(instance_type=req.instance_type or DEFAULT_BUILTIN_INSTANCE, **compute_kw),
            hyperparameters=hps,
            **common,
        )
        channels = [
            InputData(channel_name=name, data_source=s3_join(req.data_uri, name) + "/",
                      content_type=BUILTIN_CONTENT_TYPE)
            for name in BUILTIN_CHANNELS
        ]
        return trainer, channels
    if req.algorithm == "pytorch":
        instance_type = req.instance_type or DEFAULT_PYTORCH_INSTANCE
        hps = {"epochs": str(req.epochs)} if req.epochs else {}
        hps.update({str(k): str(v) for k, v in req.hyperparameters.items()})
        requirements = TRAINING_DIR / "requirements.txt"
        trainer = ModelTrainer(
            training_image=image_uris.retrieve(
                "pytorch", region=region, version=PYTORCH_VERSION, py_version=PYTORCH_PY_VERSION,
                instance_type=instance_type, image_scope="training"),
            source_code=SourceCode(
                source_dir=str(TRAINING_DIR), entry_script="train.py",
                requirements="requirements.txt" if requirements.is_file() else None,
                ignore_patterns=SOURCE_IGNORE),
            base_job_name=req.base_job_name or "scones-pytorch",
            compute=Compute(instance_type=instance_type, **compute_kw),
            hyperparameters=hps,
            **common,
        )
        channels = [InputData(channel_name=name, data_source=s3_join(req.data_uri, name) + "/")
                    for name in ("train", "validation")]
        if req.reviewed_uri:  # SM_CHANNEL_REVIEWED: train.py adds it to the training part only
            channels.append(InputData(channel_name="reviewed", data_source=s3_join(req.reviewed_uri) + "/"))
        return trainer, channels
    raise LaunchError(f"unknown algorithm {req.algorithm!r} (builtin or pytorch)")


def launch(req: TrainRequest, boto_session) -> dict:
    """Start the training job; returns its name, model artifact location and (if waited) status."""
    trainer, channels = build_trainer(req, boto_session)
    trainer.train(input_data_config=channels, wait=req.wait, logs=req.wait)
    job = trainer._latest_training_job  # the SDK keeps the created job here (no public accessor)
    name = job.training_job_name
    described = boto_session.client("sagemaker").describe_training_job(TrainingJobName=name)
    return {
        "training_job_name": name,
        "status": described.get("TrainingJobStatus"),
        "model_data": s3_join(req.output_uri, "models", name, "output", "model.tar.gz"),
    }
