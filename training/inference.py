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
import threading

import numpy as np

try:
    from .preprocess import DEFAULT_MAX_PIXELS, ImageTooLargeError, InvalidImageError, load_image, to_input
except ImportError:  # run as a script from inside training/ (SageMaker script mode)
    from preprocess import DEFAULT_MAX_PIXELS, ImageTooLargeError, InvalidImageError, load_image, to_input

__all__ = ["DEFAULT_MODEL_DIR", "Classifier", "InvalidImageError", "ImageTooLargeError", "ModelLoadError"]

DEFAULT_MODEL_DIR = pathlib.Path(__file__).resolve().parent / "model"


class ModelLoadError(RuntimeError):
    """The model directory is missing, incomplete or does not match its metadata."""


# ONNX Runtime threading for serving: one intra-op thread per session run, so concurrent requests (the
# endpoint's workers, TorchServe's workers) share the cores instead of each spinning up a thread per core.
SERVING_THREADS = 1
# The name training.export gives the batch axis of the graph's input and output.
BATCH_DIM = "batch"


class Classifier:
    """A loaded model. Thread-safe: one instance may serve concurrent requests.

    Two sessions over the same file, each opened when first needed: one with the batch dimension fixed at 1,
    for single images (the endpoint's only request shape), where ONNX Runtime can resolve every shape and
    simplify the graph to a fraction of its nodes; and one with a free batch dimension, for batches.
    """

    def __init__(self, open_session, metadata: dict, model_dir: pathlib.Path, max_pixels: int = DEFAULT_MAX_PIXELS):
        self._open_session = open_session  # fixed_batch_dim: str | None -> onnxruntime.InferenceSession
        self._sessions: dict[str | None, object] = {}
        self._sessions_lock = threading.Lock()
        self._batch_dim = BATCH_DIM
        single = self._session(BATCH_DIM)
        batch_dim = single.get_inputs()[0].shape[0]
        if isinstance(batch_dim, str):  # another exporter named the axis differently: this session is the batched one
            self._sessions[None], self._batch_dim = self._sessions.pop(BATCH_DIM), batch_dim
            single = self._session(batch_dim)
        self._input_name = single.get_inputs()[0].name
        self.metadata = metadata
        self.classes: list[str] = list(metadata["classes"])
        self.input_size: int = int(metadata["input"]["size"])
        self.model_dir = model_dir
        self.max_pixels = max_pixels  # immutable after construction; onnxruntime's run() is thread-safe

    def _session(self, fixed_batch_dim: str | None):
        """The session with ``fixed_batch_dim`` set to 1 (None: the free-batch one), opened on first use."""
        with self._sessions_lock:
            if fixed_batch_dim not in self._sessions:
                self._sessions[fixed_batch_dim] = self._open_session(fixed_batch_dim)
            return self._sessions[fixed_batch_dim]

    @classmethod
    def load(cls, model_dir: str | os.PathLike = DEFAULT_MODEL_DIR, *, threads: int | None = SERVING_THREADS,
             max_pixels: int = DEFAULT_MAX_PIXELS) -> "Classifier":
        """Open model_dir (metadata.json + the ONNX file it names).

        threads: intra-op threads per run (default 1, for serving concurrent requests; None = ORT's default,
        one per core, for a single stream of large batches such as evaluation).
        """
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
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")

        def open_session(fixed_batch_dim: str | None):
            options = ort.SessionOptions()
            options.inter_op_num_threads = 1  # the graph is a chain: nothing to run in parallel between ops
            if threads is not None:
                options.intra_op_num_threads = threads
                # Idle threads spinning for work take cores from concurrent requests.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if fixed_batch_dim:
                options.add_free_dimension_override_by_name(fixed_batch_dim, 1)
            try:
                return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ModelLoadError(f"onnxruntime cannot load {model_path}: {exc}") from exc

        return cls(open_session, metadata, model_dir, max_pixels)

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
        session = self._session(self._batch_dim if batch.shape[0] == 1 else None)
        return session.run(None, {self._input_name: np.ascontiguousarray(batch)})[0]
