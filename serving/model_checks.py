"""What a model must show before the server swaps it in, and the guard on what it answers.

A model file that loads is not yet a model that works: garbled weights loaded fine and answered
0.0 for every flight, and a NaN in one embedding row answered NaN for one carrier. So a model is
built from bytes that are hashed on the way in and compared with the md5s registration recorded
(`lineage.files`), then it scores its probe (`ml.training.probe`, rows with the answers training
recorded) and its weights are scanned for non-finite values. Any failure is a `ModelRefusedError`
naming the version, the file or the check, and the previous model keeps serving.

The probe can only cover categories its rows have; the weight scan covers every embedding row,
and `nonfinite` is the last guard on the request path for what neither could foresee.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
from onnx import numpy_helper

from ml.registry.model_registry import ModelVersion, RegistryError, md5_hex, md5_mismatch, recorded_md5s
from ml.training.onnx_model import MODEL_FILE, PREPROCESS_FILE, OnnxModel
from ml.training.preprocess import UNKNOWN, Preprocessor
from ml.training.probe import LABEL, PROBE_FILE, RECORDED, probe_scores, read_probe

log = logging.getLogger("serving")

LOADED_FILES = (MODEL_FILE, PREPROCESS_FILE, PROBE_FILE)
"""What the server reads of a model folder: the graph, its preprocessor and its probe."""
PROBE_TOLERANCE = 1e-4
"""Largest difference from a recorded probe answer accepted: the same graph on another CPU or
onnxruntime build differs by ~1e-7; a garbled weight moves answers by far more."""
SCORE_TOLERANCE = 1e-3
"""Largest difference of the probe's ROC AUC or log loss from the recorded ones."""
EMBEDDING = re.compile(r"embeddings\.(\d+)\.weight$")


class ModelRefusedError(RuntimeError):
    """A model version that must not serve; `check` says which check refused it."""

    def __init__(self, version: int, check: str, reason: str) -> None:
        super().__init__(reason)
        self.refusal = Refusal(version, check, reason)


@dataclass(frozen=True)
class Refusal:
    version: int
    check: str
    """files, md5, load, probe, weights or try (a prediction through the snapshot)."""
    reason: str


@dataclass(frozen=True)
class Checks:
    """What loading found: md5s of the bytes loaded, whether they matched registered ones, the probe's result."""

    files: dict[str, str] = field(default_factory=dict)
    verified: bool = False
    """False for a row registered before file md5s were recorded: loaded, with a warning."""
    probe: dict[str, Any] | None = None


class LoadedModel(OnnxModel):
    """An `OnnxModel` built from bytes in memory, so the bytes hashed are the bytes that run."""

    def __init__(self, folder: Path, graph: bytes, preprocess: bytes, threads: int) -> None:
        self.folder = folder
        self.preprocessor = Preprocessor.from_json(preprocess.decode())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        self.session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])


def check_model(
    version: ModelVersion, folder: Path, data: Mapping[str, bytes], threads: int
) -> tuple[LoadedModel, Checks]:
    """The model of `version` from the bytes read of its files, or a ModelRefusedError saying why not."""
    number = version.version
    try:
        recorded = recorded_md5s(version)
    except RegistryError as exc:
        raise ModelRefusedError(number, "md5", str(exc)) from exc
    needed = [MODEL_FILE, PREPROCESS_FILE, *([PROBE_FILE] if PROBE_FILE in recorded else [])]
    missing = [name for name in needed if name not in data]
    if missing:
        raise ModelRefusedError(number, "files", f"model version {number} lacks {', '.join(missing)}")
    for name in sorted(data):
        problem = md5_mismatch(version, name, data[name])
        if problem is not None:
            raise ModelRefusedError(number, "md5", problem)
    if not recorded:
        log.warning("model version %s was registered without file md5s: loading it unverified", number)
    try:
        model = LoadedModel(folder, data[MODEL_FILE], data[PREPROCESS_FILE], threads)
    except Exception as exc:
        raise ModelRefusedError(number, "load", f"model version {number} does not load: {exc}") from exc
    probe = None
    if PROBE_FILE in data:
        probe = check_probe(version, model, data[PROBE_FILE])
    else:
        log.warning("model version %s has no %s: serving it without a probe", number, PROBE_FILE)
    check_weights(version, data[MODEL_FILE], model.preprocessor)
    files = {name: md5_hex(data[name]) for name in sorted(data)}
    return model, Checks(files=files, verified=bool(recorded), probe=probe)


def check_probe(version: ModelVersion, model: OnnxModel, data: bytes) -> dict[str, Any]:
    """Score the probe: finite answers within `PROBE_TOLERANCE` of the recorded ones, the same scores."""
    number = version.version
    try:
        probe = read_probe(data)
        answers = model.predict(probe).astype(np.float64)
    except Exception as exc:
        raise ModelRefusedError(
            number, "probe", f"model version {number} cannot score its probe: {exc}"
        ) from exc
    recorded = probe[RECORDED].to_numpy().astype(np.float64)
    rows = probe.height
    bad = ~np.isfinite(answers)
    if bad.any():
        raise ModelRefusedError(
            number,
            "probe",
            f"model version {number} answers a non-finite probability to {int(bad.sum())} of {rows} "
            f"probe rows{_shared(probe, bad, model.preprocessor.categorical)}",
        )
    difference = np.abs(answers - recorded)
    worst = float(difference.max()) if rows else 0.0
    if worst > PROBE_TOLERANCE:
        raise ModelRefusedError(
            number,
            "probe",
            f"model version {number} answers {int((difference > PROBE_TOLERANCE).sum())} of {rows} probe "
            f"rows differently from what training recorded (by up to {worst:.3g}, tolerance "
            f"{PROBE_TOLERANCE:g}): these are not the weights that were evaluated",
        )
    labels = probe[LABEL].to_numpy()
    scores = probe_scores(labels, answers)
    expected = version.metrics.get("training", {}).get("probe") or probe_scores(labels, recorded)
    for name in ("roc_auc", "log_loss"):
        got, want = scores.get(name), expected.get(name)
        if got is not None and want is not None and abs(got - want) > SCORE_TOLERANCE:
            raise ModelRefusedError(
                number,
                "probe",
                f"model version {number} scores its probe at {name} {got:.4f}, training recorded "
                f"{want:.4f} (tolerance {SCORE_TOLERANCE:g})",
            )
    return {**scores, "max_abs_difference": worst}


def check_weights(version: ModelVersion, graph: bytes, preprocessor: Preprocessor) -> None:
    """Every float initializer and constant finite: the probe only reaches the embedding rows its rows use."""
    number = version.version
    for name, tensor in _tensors(onnx.load_from_string(graph).graph):
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind != "f" or np.isfinite(values).all():
            continue
        where = ""
        match = EMBEDDING.search(name)
        if match and values.ndim == 2 and int(match.group(1)) < len(preprocessor.categorical):
            column = preprocessor.categorical[int(match.group(1))]
            codes = np.flatnonzero(~np.isfinite(values).all(axis=1))
            names = [_category(preprocessor, column, int(c)) for c in codes[:5]]
            where = f" (the embedding rows of {column} {', '.join(names)})"
        raise ModelRefusedError(
            number,
            "weights",
            f"model version {number}: weight {name} holds {int((~np.isfinite(values)).sum())} "
            f"non-finite value(s){where}",
        )


def _tensors(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """Initializers by name, and the tensors of Constant nodes by the name of their output."""
    yield from ((t.name, t) for t in graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant":
            yield from ((node.output[0], a.t) for a in node.attribute if a.type == onnx.AttributeProto.TENSOR)


def nonfinite(probabilities: np.ndarray) -> int:
    """How many answers are NaN or infinite: a request with any is refused, neither sent nor logged."""
    return int(np.count_nonzero(~np.isfinite(probabilities)))


def _category(preprocessor: Preprocessor, column: str, code: int) -> str:
    vocabulary = preprocessor.vocabularies[column]
    return "(unknown)" if code == UNKNOWN or code > len(vocabulary) else vocabulary[code - 1]


def _shared(probe: pl.DataFrame, bad: np.ndarray, columns: tuple[str, ...]) -> str:
    """', all with carrier=UA' when the failing rows are exactly those of one category value."""
    for column in columns:
        values = set(probe[column].filter(bad).to_list())
        if len(values) == 1 and not (set(probe[column].filter(~bad).to_list()) & values):
            return f", all with {column}={values.pop()}"
    return ""
