"""Stage the bicycle/motorcycle data set: CIFAR-100 (or a folder of PNGs) -> PNG tree + .lst files.

    python -m training stage-data --out data/staged                      # download CIFAR-100
    python -m training stage-data --archive cifar-100-python.tar.gz      # local archive (or extracted dir)
    python -m training stage-data --from-folder my-photos/        # {class}/*.png
    python -m training stage-data --upload-only --out data/staged --s3-uri s3://bucket/prefix
    python -m training stage-data --from-manifest s3://<ground-truth-bucket>/manifest/ --out data/reviewed
    python -m training stage-data --from-table <results-table> --out data/reviewed

Reviewers' decisions (the review page) stage as training data only: --from-manifest reads the Ground
Truth augmented manifest the review function writes, --from-table the results table's human labels (the
intake photos they name, where they still exist). Both write {out}/train/{class}/*.png and mark the
folder REVIEWED_MARKER: `training.train --reviewed-dir {out}/train` adds them to the training part
only, and training.evaluate refuses a marked folder, so a reviewed image never scores a model.

Local layout (the same whatever the source):
    {out}/{split}/{class}/*.png          RGB PNGs, file names from the archive's `filenames`
    {out}/{split}.lst                    index <TAB> label <TAB> {class}/{file}.png
    {out}/holdout/train.lst              the part of the train split the built-in algorithm fits on
    {out}/holdout/validation.lst         a stratified held-out part of the train split (its validation channel)

S3 layout (--s3-uri), as the built-in image-classification algorithm's channels expect:
    train/{class}/*.png + train_lst/train.lst                 the holdout/train.lst part of the train split
    validation/{class}/*.png + validation_lst/validation.lst  the holdout/validation.lst part
    test/{class}/*.png, test_lst/test.lst  (final reporting only, never a training channel)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import random
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np
from PIL import Image

from botocore.exceptions import BotoCoreError, ClientError

from .preprocess import REVIEWED_MARKER
from .s3_uri import S3UriError, parse_s3_uri

# The Ground Truth augmented manifest's label attribute, as the review function writes it
# (functions/reviews/ground_truth.py: LABEL_ATTRIBUTE); a test stages what the review API wrote.
METADATA_ATTRIBUTE = "vehicle-class-metadata"

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
# Published on https://www.cs.toronto.edu/~kriz/cifar.html for the python version.
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
ARCHIVE_NAME = "cifar-100-python.tar.gz"
ARCHIVE_DIR = "cifar-100-python"
# CIFAR-100 fine label -> class name; label order in the .lst files follows this order.
FINE_CLASSES = {8: "bicycle", 48: "motorcycle"}
SPLITS = ("train", "test")
HOLDOUT_DIR = "holdout"
MAX_REVIEWED_SIDE = 384  # phone photos are large; the model's input is 32 px (the serialize function's cap)


class StageDataError(Exception):
    """Base class for every error this module reports to the user."""


class DownloadError(StageDataError):
    """The archive could not be downloaded (no network, proxy, server down)."""


class ChecksumMismatchError(StageDataError):
    """A downloaded or given archive does not have the expected md5."""


class SourceFormatError(StageDataError):
    """The source is not a CIFAR-100 python archive / a folder of {class}/*.png."""


class OutputExistsError(StageDataError):
    """The output folder exists and --overwrite was not given."""


@dataclass(frozen=True)
class Example:
    split: str
    class_name: str
    label: int
    index: int  # row in the CIFAR split (or running number for a folder source)
    filename: str
    pixels: np.ndarray  # HxWx3 uint8 RGB

    @property
    def relative_path(self) -> str:
        return f"{self.class_name}/{self.filename}"


@dataclass(frozen=True)
class LstRow:
    index: int
    label: int
    relative_path: str

    @property
    def class_name(self) -> str:
        return self.relative_path.split("/", 1)[0]


# --------------------------------------------------------------------------- download


def md5_of(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Progress:
    """One self-overwriting progress line on a stream (stderr by default)."""

    def __init__(self, label: str, total: int | None, stream: IO[str]):
        self.label, self.total, self.stream = label, total, stream
        self.done = 0
        self._last_shown = -1

    def update(self, n: int) -> None:
        self.done += n
        if self.total:
            percent = min(100, self.done * 100 // self.total)
            if percent != self._last_shown:
                self._last_shown = percent
                bar = "#" * (percent // 4)
                self.stream.write(
                    f"\r{self.label} [{bar:<25}] {percent:3d}% "
                    f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
                )
                self.stream.flush()
        else:
            mb = self.done // 1_000_000
            if mb != self._last_shown:
                self._last_shown = mb
                self.stream.write(f"\r{self.label} {self.done / 1e6:.1f} MB")
                self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def download(url: str, dest: Path, expected_md5: str, progress: IO[str] | None = None,
             timeout: float = 60.0) -> Path:
    """Download url to dest, verifying the md5 while streaming.

    The bytes go to a hidden temporary file next to dest that is renamed into place only after
    the checksum matches, so an interrupted or corrupt download never leaves a file at dest.
    An existing dest with the right checksum is reused.
    """
    dest = Path(dest)
    if dest.is_file():
        if md5_of(dest) == expected_md5:
            return dest
        raise ChecksumMismatchError(
            f"{dest} exists but its md5 is not {expected_md5}; delete it to download again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    stream = progress if progress is not None else sys.stderr
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, _open_url(url, timeout) as resp:
            length = resp.headers.get("Content-Length")
            bar = _Progress(f"downloading {dest.name}", int(length) if length else None, stream)
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            bar.close()
        actual = digest.hexdigest()
        if actual != expected_md5:
            raise ChecksumMismatchError(
                f"download of {url} has md5 {actual}, expected {expected_md5}; nothing was kept"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _open_url(url: str, timeout: float):
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts and refused connections are OSErrors
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot download {url}: {reason}. Without network access, fetch {ARCHIVE_NAME} "
                            f"elsewhere and stage it with `make data ARCHIVE=<path>` (--archive)") from None


# --------------------------------------------------------------------------- reading sources


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's dicts of lists/bytes/numpy arrays and nothing else.

    A pickle can run arbitrary code on load; this refuses every global except numpy's array
    reconstruction, so a tampered archive fails with a clear error instead.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise SourceFormatError(f"unexpected object {module}.{name} in a CIFAR pickle")


def _unpickle(data: bytes, what: str) -> dict:
    try:
        obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except SourceFormatError:
        raise
    except Exception as exc:  # any unpickling failure means: not a CIFAR pickle
        raise SourceFormatError(f"{what} is not a CIFAR-100 python pickle: {exc}") from exc
    if not isinstance(obj, dict):
        raise SourceFormatError(f"{what} is not a CIFAR-100 python pickle (no dict inside)")
    return obj


def _cifar_members(source: Path) -> dict[str, bytes]:
    """The train/test/meta pickles of a .tar.gz archive or an extracted folder."""
    wanted = ("train", "test", "meta")
    if source.is_dir():
        base = source / ARCHIVE_DIR if (source / ARCHIVE_DIR).is_dir() else source
        missing = [name for name in wanted if not (base / name).is_file()]
        if missing:
            raise SourceFormatError(f"{base} lacks the CIFAR-100 file(s) {', '.join(missing)}")
        return {name: (base / name).read_bytes() for name in wanted}
    if not source.is_file():
        raise SourceFormatError(f"{source} does not exist")
    try:
        with tarfile.open(source, "r:*") as tar:
            members = {}
            for name in wanted:
                try:
                    fh = tar.extractfile(f"{ARCHIVE_DIR}/{name}")
                except KeyError:
                    fh = None
                if fh is None:
                    raise SourceFormatError(f"{source} has no {ARCHIVE_DIR}/{name}")
                members[name] = fh.read()
            return members
    except tarfile.TarError as exc:
        raise SourceFormatError(f"{source} is not a readable tar archive: {exc}") from exc


def _decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_cifar(source: Path, fine_classes: dict[int, str] = FINE_CLASSES) -> Iterator[Example]:
    """Examples of the wanted fine classes from both splits of a CIFAR-100 python archive."""
    members = _cifar_members(Path(source))
    meta = _unpickle(members["meta"], "meta")
    names = [_decode(n) for n in meta.get(b"fine_label_names", [])]
    for fine, class_name in fine_classes.items():
        if fine >= len(names) or names[fine] != class_name:
            found = names[fine] if fine < len(names) else "nothing"
            raise SourceFormatError(f"fine label {fine} is {found!r} in meta, expected {class_name!r}")
    label_of = {fine: label for label, fine in enumerate(sorted(fine_classes))}
    for split in SPLITS:
        batch = _unpickle(members[split], split)
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            fine_labels = list(batch[b"fine_labels"])
            filenames = [_decode(f) for f in batch[b"filenames"]]
        except KeyError as exc:
            raise SourceFormatError(f"{split} pickle lacks {exc}") from exc
        if data.ndim != 2 or data.shape[1] != 3072 or not (
            len(data) == len(fine_labels) == len(filenames)
        ):
            raise SourceFormatError(
                f"{split} pickle: data {data.shape}, {len(fine_labels)} labels, "
                f"{len(filenames)} file names do not line up as N x 3072 / N / N"
            )
        for row, fine in enumerate(fine_labels):
            if fine in fine_classes:
                # CIFAR rows are channel-planar: 1024 red, 1024 green, 1024 blue, row-major.
                pixels = data[row].reshape(3, 32, 32).transpose(1, 2, 0)
                yield Example(split, fine_classes[fine], label_of[fine], row, filenames[row], pixels)


def read_folder(folder: Path, split: str) -> Iterator[Example]:
    """Examples from a folder of {class}/*.png; labels are folder names in sorted order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceFormatError(f"{folder} is not a folder")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise SourceFormatError(f"{folder} has no class sub-folders ({{class}}/*.png)")
    index = 0
    for label, class_name in enumerate(classes):
        files = sorted((folder / class_name).glob("*.png"))
        if not files:
            raise SourceFormatError(f"{folder / class_name} has no .png files")
        for path in files:
            try:
                with Image.open(path) as img:
                    # The shared PNGs are RGBA with opaque alpha; the models want RGB.
                    pixels = np.asarray(img.convert("RGB"))
            except OSError as exc:
                raise SourceFormatError(f"{path} is not a readable image: {exc}") from exc
            yield Example(split, class_name, label, index, path.name, pixels)
            index += 1


@dataclass
class ReviewedCounts:
    used: int = 0
    not_a_class: int = 0  # "unusable", or a class this model does not have
    missing: int = 0  # the image is gone (deleted from the intake bucket)


def read_reviewed(lines: Iterable[dict], fetch, counts: ReviewedCounts,
                  classes: tuple[str, ...] = tuple(FINE_CLASSES.values())) -> Iterator[Example]:
    """Examples (split train) from Ground Truth manifest lines; ``fetch(source_ref)`` returns the image's
    bytes, or None when it no longer exists."""
    for number, line in enumerate(lines):
        name = (line.get(METADATA_ATTRIBUTE) or {}).get("class-name")
        if name not in classes:
            counts.not_a_class += 1
            continue
        data = fetch(line["source-ref"])
        if data is None:
            counts.missing += 1
            continue
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.seek(0)
                rgb = img.convert("RGB")
        except OSError as exc:
            raise SourceFormatError(f"{line['source-ref']} is not a readable image: {exc}") from exc
        rgb.thumbnail((MAX_REVIEWED_SIDE, MAX_REVIEWED_SIDE))
        stem = hashlib.sha256(line["source-ref"].encode()).hexdigest()[:24]
        counts.used += 1
        yield Example("train", name, classes.index(name), number, f"{stem}.png", np.asarray(rgb))


def read_manifest(s3, bucket: str, prefix: str) -> Iterator[dict]:
    """Every line of every manifest object under ``prefix``, in key order (S3 objects cannot be appended to,
    so the review function writes one object per decision: functions/reviews/ground_truth.py)."""
    import json

    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            text = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
            yield from (json.loads(line) for line in text.splitlines() if line.strip())


def manifest_lines(source: str, s3) -> Iterator[dict]:
    """The lines of a manifest: s3://bucket/prefix (every object below it), a .jsonl file, or a folder of them."""
    import json

    if source.startswith("s3://"):
        bucket, prefix = parse_s3_uri(source)
        yield from read_manifest(s3, bucket, prefix)
        return
    path = Path(source)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    for file in files:
        if not file.is_file():
            raise SourceFormatError(f"manifest {file} does not exist")
        yield from (json.loads(text) for text in file.read_text().splitlines() if text.strip())


def table_lines(table: str, dynamodb) -> list[dict]:
    """The results table's decided records as manifest lines naming the intake photo."""
    from contracts.results import scan_results

    return [{"source-ref": f"s3://{r['bucket']}/{r['key']}", METADATA_ATTRIBUTE: {"class-name": r["human_label"]}}
            for r in scan_results(dynamodb, table) if r.get("human_label")]


def s3_fetcher(s3):
    from botocore.exceptions import ClientError

    def fetch(source_ref: str) -> bytes | None:
        bucket, key = parse_s3_uri(source_ref)
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
    return fetch


# --------------------------------------------------------------------------- writing


def read_lst(path: Path) -> list[LstRow]:
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise SourceFormatError(f"{path}:{number}: expected 3 tab-separated columns")
        rows.append(LstRow(int(parts[0]), int(float(parts[1])), parts[2]))
    return rows


def write_lst(path: Path, rows: Iterable[LstRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{r.index}\t{r.label}\t{r.relative_path}\n" for r in rows))


def stratified_holdout(rows: list[LstRow], fraction: float, seed: int) -> tuple[list[LstRow], list[LstRow]]:
    """Split rows into (fit, held_out) keeping each label's share; deterministic for a seed."""
    if not 0 < fraction < 1:
        raise StageDataError(f"validation fraction must be between 0 and 1, got {fraction}")
    by_label: dict[int, list[LstRow]] = defaultdict(list)
    for row in rows:
        by_label[row.label].append(row)
    rng = random.Random(seed)
    fit, held = [], []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda r: r.relative_path)
        rng.shuffle(group)
        n_held = max(1, round(len(group) * fraction))
        if n_held >= len(group):
            raise StageDataError(f"label {label} has too few images ({len(group)}) to hold some out")
        held += group[:n_held]
        fit += group[n_held:]
    return sorted(fit, key=lambda r: r.index), sorted(held, key=lambda r: r.index)


def _write_examples(examples: Iterable[Example], root: Path, progress: IO[str]) -> dict[str, list[LstRow]]:
    rows: dict[str, list[LstRow]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for count, ex in enumerate(examples, start=1):
        key = (ex.split, ex.relative_path)
        if key in seen:
            raise SourceFormatError(f"two images named {ex.relative_path} in the {ex.split} split")
        seen.add(key)
        path = root / ex.split / ex.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ex.pixels).save(path, format="PNG")
        rows[ex.split].append(LstRow(ex.index, ex.label, ex.relative_path))
        if count % 200 == 0:
            progress.write(f"\rwrote {count} images")
            progress.flush()
    total = sum(len(r) for r in rows.values())
    progress.write(f"\rwrote {total} images\n")
    return rows


def stage(examples: Iterable[Example], out: Path, *, validation_fraction: float = 0.2,
          seed: int = 0, overwrite: bool = False, progress: IO[str] | None = None,
          reviewed: bool = False) -> dict[str, int]:
    """Write examples to out (see module doc); returns image counts per split and channel.

    Everything is written to a temporary sibling folder first and moved into place at the end,
    so a failure never leaves a half-staged out, and an existing out is replaced only with
    overwrite=True and only after the new one is complete.
    """
    out = Path(out)
    stream = progress if progress is not None else sys.stderr
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".staging", dir=out.parent))
    try:
        rows = _write_examples(examples, work, stream)
        if not rows:
            raise SourceFormatError("the source holds no images of the wanted classes")
        counts = {}
        for split, split_rows in rows.items():
            write_lst(work / f"{split}.lst", split_rows)
            counts[split] = len(split_rows)
        if reviewed:  # training data only: no hold-out, and marked so no tool takes it for a test split
            (work / "train" / REVIEWED_MARKER).write_text(
                "Reviewers' labels (python -m review): training data only, never a validation or test split.\n")
        elif "train" in rows:
            fit, held = stratified_holdout(rows["train"], validation_fraction, seed)
            write_lst(work / HOLDOUT_DIR / "train.lst", fit)
            write_lst(work / HOLDOUT_DIR / "validation.lst", held)
            counts["holdout/train"], counts["holdout/validation"] = len(fit), len(held)
        if out.exists():
            old = out.with_name(f".{out.name}.replaced")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(work, out)
            shutil.rmtree(old)
        else:
            os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts


# --------------------------------------------------------------------------- S3 upload


def channel_layout(staged: Path) -> list[tuple[Path, str]]:
    """(local file, S3 key below the prefix) pairs for the built-in algorithm's channels."""
    staged = Path(staged)
    needed = [staged / "train.lst", staged / HOLDOUT_DIR / "train.lst", staged / HOLDOUT_DIR / "validation.lst"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise StageDataError(f"{staged} is not a staged train split (missing {', '.join(missing)})")
    pairs: list[tuple[Path, str]] = []
    # The train channel holds exactly the images train_lst lists, so a script that reads the
    # train folder (training/train.py) never sees the held-out validation images either.
    for row in read_lst(staged / HOLDOUT_DIR / "train.lst"):
        pairs.append((staged / "train" / row.relative_path, f"train/{row.relative_path}"))
    for row in read_lst(staged / HOLDOUT_DIR / "validation.lst"):
        pairs.append((staged / "train" / row.relative_path, f"validation/{row.relative_path}"))
    pairs.append((staged / HOLDOUT_DIR / "train.lst", "train_lst/train.lst"))
    pairs.append((staged / HOLDOUT_DIR / "validation.lst", "validation_lst/validation.lst"))
    if (staged / "test.lst").is_file():
        for row in read_lst(staged / "test.lst"):
            pairs.append((staged / "test" / row.relative_path, f"test/{row.relative_path}"))
        pairs.append((staged / "test.lst", "test_lst/test.lst"))
    absent = [str(local) for local, _ in pairs if not local.is_file()]
    if absent:
        raise StageDataError(f"{len(absent)} file(s) listed in the .lst files are missing, e.g. {absent[0]}")
    return pairs


def upload(staged: Path, s3_uri: str, boto_session=None, progress: IO[str] | None = None) -> int:
    """Upload a staged folder to s3_uri in the channel layout; returns the number of objects."""
    import boto3  # only needed for uploads

    bucket, prefix = parse_s3_uri(s3_uri)
    pairs = channel_layout(staged)
    s3 = (boto_session or boto3.Session()).client("s3")
    stream = progress if progress is not None else sys.stderr
    for count, (local, key) in enumerate(pairs, start=1):
        content_type = "image/png" if key.endswith(".png") else "text/plain"
        s3.upload_file(str(local), bucket, f"{prefix}/{key}" if prefix else key,
                       ExtraArgs={"ContentType": content_type})
        if count % 100 == 0 or count == len(pairs):
            stream.write(f"\ruploaded {count}/{len(pairs)} objects to s3://{bucket}/{prefix}")
            stream.flush()
    stream.write("\n")
    return len(pairs)


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training stage-data",
        description="Stage CIFAR-100 bicycle/motorcycle images as {split}/{class}/*.png + .lst files, "
        "optionally upload them in the SageMaker built-in image-classification channel layout.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--archive", type=Path,
                        help="local cifar-100-python.tar.gz or its extracted folder (default: download it)")
    source.add_argument("--from-folder", type=Path,
                        help="a folder of {class}/*.png, e.g. your own labelled photos")
    source.add_argument("--from-manifest", metavar="S3_URI|PATH",
                        help="reviewers' labels: the review page's Ground Truth manifest (s3://bucket/manifest/), "
                             "or a .jsonl file or folder")
    source.add_argument("--from-table", metavar="NAME",
                        help="reviewers' labels from the results table (the intake photos they name)")
    source.add_argument("--upload-only", action="store_true",
                        help="do not stage; upload the already staged --out folder to --s3-uri")
    parser.add_argument("--split", choices=SPLITS, default="train",
                        help="which split a --from-folder source is (default: train)")
    parser.add_argument("--out", type=Path, default=Path("data/staged"), help="output folder (default: data/staged)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--url", default=CIFAR100_URL, help="where to download the archive from")
    parser.add_argument("--md5", default=CIFAR100_MD5, help="expected md5 of the archive")
    parser.add_argument("--download-to", type=Path, default=Path("data") / ARCHIVE_NAME,
                        help=f"where the downloaded archive is kept (default: data/{ARCHIVE_NAME})")
    parser.add_argument("--validation-fraction", type=float, default=0.2,
                        help="stratified share of the train split held out as the validation channel (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hold-out split (default 0)")
    parser.add_argument("--s3-uri", help="upload to s3://bucket/prefix after staging")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.upload_only:
            if not args.s3_uri:
                raise StageDataError("--upload-only needs --s3-uri")
        else:
            reviewed = bool(args.from_manifest or args.from_table)
            if reviewed:
                import boto3

                if args.split != "train":
                    raise StageDataError("reviewed images are training data only: they never stage as --split test")
                lines = (manifest_lines(args.from_manifest, boto3.client("s3")) if args.from_manifest
                         else table_lines(args.from_table, boto3.client("dynamodb")))
                review_counts = ReviewedCounts()
                examples = read_reviewed(lines, s3_fetcher(boto3.client("s3")), review_counts)
            elif args.from_folder:
                examples = read_folder(args.from_folder, args.split)
            else:
                archive = args.archive
                if archive is None:
                    archive = download(args.url, args.download_to, args.md5)
                elif archive.is_file() and (actual := md5_of(archive)) != args.md5:
                    raise ChecksumMismatchError(
                        f"{archive} has md5 {actual}, expected {args.md5} (pass --md5 to override)"
                    )
                examples = read_cifar(archive)
            counts = stage(examples, args.out, validation_fraction=args.validation_fraction,
                           seed=args.seed, overwrite=args.overwrite, reviewed=reviewed)
            print(f"staged {args.out}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
            if reviewed:
                print(f"reviewed images: {review_counts.used} staged, {review_counts.not_a_class} not a vehicle class "
                      f"(unusable), {review_counts.missing} no longer stored; train on them with "
                      f"`python -m training train --reviewed-dir {args.out}/train`")
        if args.s3_uri:
            n = upload(args.out, args.s3_uri)
            print(f"uploaded {n} objects to {args.s3_uri.rstrip('/')}/"
                  "{train,validation,train_lst,validation_lst,test,test_lst}")
    except (StageDataError, S3UriError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"error: cannot read the reviewers' labels: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
