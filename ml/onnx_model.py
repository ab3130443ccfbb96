"""Predictions from a trained model folder with onnxruntime alone.

What serving and evaluation load: `model.onnx` and `preprocess.json`, with no torch
import, so a server image stays small and cannot drift from the exported graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import polars as pl

from ml.preprocess import Preprocessor

MODEL_FILE = "model.onnx"
PREPROCESS_FILE = "preprocess.json"


class OnnxModel:
    """The exported network and its preprocessor, run on the CPU provider."""

    def __init__(self, folder: Path | str) -> None:
        folder = Path(folder)
        missing = [name for name in (MODEL_FILE, PREPROCESS_FILE) if not (folder / name).exists()]
        if missing:
            raise FileNotFoundError(f"model folder {folder} lacks {', '.join(missing)}")
        self.folder = folder
        self.preprocessor = Preprocessor.load(folder / PREPROCESS_FILE)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(folder / MODEL_FILE), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Delay probability (float32) per row of a feature frame."""
        if frame.is_empty():
            return np.zeros(0, dtype=np.float32)
        categorical, numeric = self.preprocessor.transform(frame)
        (probability,) = self.session.run(["probability"], {"categorical": categorical, "numeric": numeric})
        return probability
