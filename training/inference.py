"""Run the shipped classifier: image bytes in, class probabilities out.

The one inference path for evaluation, the local server, the SageMaker container and the
local twin. Needs only numpy, Pillow and onnxruntime (no torch).

    clf = Classifier.load()                  # training/model by default
    clf.predict(open("bike.jpg", "rb").read())   # -> [p_bicycle, p_motorcycle]
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np

try:
    from .preprocess import DEFAULT_MAX_PIXELS, ImageTooLargeError, InvalidImageError, load_image, to_input
except ImportError:  # run as a script from inside training/ (SageMaker script mode)
    from preprocess import DEFAULT_MAX_PIXELS, ImageTooLargeError, InvalidImageError, load_image, to_input

__all__ = ["DEFAULT_MODEL_DIR", "Classifier", "InvalidImageError", "ImageTooLargeError", "ModelLoadError"]

DEFAULT_MODEL_DIR = pathlib.Path(__file__).resolve().parent / "model"


class ModelLoadError(RuntimeError):
    """The model directory is missing, incomplete or does not match its metadata."""


class Classifier:
    """A loaded model. Thread-safe: one instance may serve concurrent requests."""

    def __init__(self, session, metadata: dict, model_dir: pathlib.Path, max_pixels: int = DEFAULT_MAX_PIXELS):
        self._session = session
        self._input_name = session.get_inputs()[0].name
        self.metadata = metadata
        self.classes: list[str] = list(metadata["classes"])
        self.input_size: int = int(metadata["input"]["size"])
        self.model_dir = model_dir
        self.max_pixels = max_pixels  # immutable after construction; onnxruntime's run() is thread-safe

    @classmethod
    def load(cls, model_dir: str | os.PathLike = DEFAULT_MODEL_DIR, *, threads: int | None = None,
             max_pixels: int = DEFAULT_MAX_PIXELS) -> "Classifier":
        """Open model_dir (metadata.json + the ONNX file it names). threads: intra-op threads (None = ORT default)."""
        import onnxruntime as ort

        model_dir = pathlib.Path(model_dir)
        meta_path = model_dir / "metadata.json"
        if not meta_path.is_file():
            raise ModelLoadError(f"no metadata.json in {model_dir} (expected a directory written by training.train)")
        try:
            metadata = json.loads(meta_path.read_text())
            model_path = model_dir / metadata["model_file"]
            _ = metadata["classes"], metadata["input"]["size"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{meta_path} is not valid model metadata: {exc!r}") from exc
        if not model_path.is_file():
            raise ModelLoadError(f"{model_path} named in {meta_path} does not exist")
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime cannot load {model_path}: {exc}") from exc
        return cls(session, metadata, model_dir, max_pixels)

    def preprocess(self, image: bytes) -> np.ndarray:
        """Image bytes -> (3, S, S) float32, exactly as in training. Raises InvalidImageError."""
        return to_input(load_image(image, max_pixels=self.max_pixels), self.input_size)

    def predict(self, image: bytes) -> list[float]:
        """Probabilities in `classes` order for one encoded image."""
        return self.predict_many([image])[0]

    def predict_many(self, images: list[bytes]) -> list[list[float]]:
        """Probabilities for several encoded images, run as one batch.

        An undecodable image raises InvalidImageError naming its position; nothing is returned
        for the batch (callers that want partial results call predict per image).
        """
        if len(images) == 0:
            return []
        arrays = []
        for i, image in enumerate(images):
            try:
                arrays.append(self.preprocess(image))
            except InvalidImageError as exc:
                if len(images) == 1:
                    raise
                raise type(exc)(f"image {i}: {exc}") from exc
        return self.predict_array(np.stack(arrays)).tolist()

    def predict_array(self, batch: np.ndarray) -> np.ndarray:
        """Already-preprocessed (N, 3, S, S) float32 in [0, 1] -> (N, C) float32 probabilities."""
        batch = np.asarray(batch)
        expected = (3, self.input_size, self.input_size)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"expected a batch of shape (N, {', '.join(map(str, expected))}), got {batch.shape}")
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        return self._session.run(None, {self._input_name: np.ascontiguousarray(batch)})[0]
