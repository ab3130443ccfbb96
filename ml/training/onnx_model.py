"""Predictions from a trained model folder with onnxruntime alone.

What serving and evaluation load: `model.onnx` and `preprocess.json`, with no torch
import, so a server image stays small and cannot drift from the exported graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import polars as pl

from ml.training.preprocess import Preprocessor

MODEL_FILE = "model.onnx"
PREPROCESS_FILE = "preprocess.json"


class OnnxModel:
    """The exported network and its preprocessor, run on the CPU provider."""

    def __init__(self, folder: Path | str, threads: int | None = None) -> None:
        """`threads` caps onnxruntime's intra-op pool (default: one per core).

        A server scoring a few rows at a time passes 1: its graph runs in microseconds,
        and a pool of spinning threads would take cores from the requests around it.
        """
        folder = Path(folder)
        missing = [name for name in (MODEL_FILE, PREPROCESS_FILE) if not (folder / name).exists()]
        if missing:
            raise FileNotFoundError(f"model folder {folder} lacks {', '.join(missing)}")
        self.folder = folder
        self.preprocessor = Preprocessor.load(folder / PREPROCESS_FILE)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(folder / MODEL_FILE), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Delay probability (float32) per row of a feature frame."""
        if frame.is_empty():
            return np.zeros(0, dtype=np.float32)
        return self.run(*self.preprocessor.transform(frame))

    def predict_columns(self, columns: dict[str, list]) -> np.ndarray:
        """`predict` of a few rows held as lists (`Preprocessor.transform_columns`)."""
        return self.run(*self.preprocessor.transform_columns(columns))

    def run(self, categorical: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        """The graph alone on encoded inputs: what the serving benchmark times as its baseline."""
        if categorical.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        (probability,) = self.session.run(["probability"], {"categorical": categorical, "numeric": numeric})
        return probability
