"""The exported ONNX model, run by onnxruntime without torch, agrees with the PyTorch network."""

import json
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
import torch

from ml.training import train
from ml.training.model import ModelConfig, TabularNet
from ml.training.onnx_model import OnnxModel
from ml.training.preprocess import Preprocessor
from tests.ml.test_train import build_snapshot, write_params


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, replayed_landing: Path) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("onnx")
    snapshot = build_snapshot(root, replayed_landing)
    out = root / "model"
    params = write_params(root / "params.yaml", max_epochs=2)
    assert train.main(["--training-set", str(snapshot), "--out", str(out), "--params", str(params)]) == 0
    return snapshot, out


def torch_probabilities(out: Path, frame: pl.DataFrame, calibrated: bool = True) -> np.ndarray:
    """The network's probabilities computed by hand: sigmoid(logit / temperature from model.json)."""
    config = ModelConfig.from_dict(json.loads((out / "model.json").read_text()))
    net = TabularNet(config)
    net.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    net.eval()
    categorical, numeric = Preprocessor.load(out / "preprocess.json").transform(frame)
    with torch.no_grad():
        logits = net(torch.from_numpy(categorical), torch.from_numpy(numeric))
    return torch.sigmoid(logits / (config.temperature if calibrated else 1.0)).numpy()


def test_onnxruntime_and_pytorch_agree_on_the_test_split(trained: tuple[Path, Path]) -> None:
    snapshot, out = trained
    test = pl.read_parquet(snapshot / "test.parquet")
    served = OnnxModel(out).predict(test)
    expected = torch_probabilities(out, test)
    assert served.shape == (test.height,) and served.dtype == np.float32
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=0)
    assert ((served > 0) & (served < 1)).all()


def test_the_calibration_fitted_on_validation_is_inside_the_graph(trained: tuple[Path, Path]) -> None:
    """The served probabilities are the calibrated ones: a server needs no second step to apply it."""
    snapshot, out = trained
    temperature = json.loads((out / "model.json").read_text())["temperature"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert temperature == metrics["calibration"]["temperature"] and temperature != 1.0
    test = pl.read_parquet(snapshot / "test.parquet")
    served = OnnxModel(out).predict(test)
    assert np.abs(served - torch_probabilities(out, test, calibrated=False)).max() > 1e-3


def test_the_graph_has_named_inputs_and_a_free_batch_axis(trained: tuple[Path, Path]) -> None:
    snapshot, out = trained
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["categorical", "numeric"]
    assert [o.name for o in graph.output] == ["probability"]
    batch = {i.type.tensor_type.shape.dim[0].dim_param for i in (*graph.input, *graph.output)}
    assert batch == {"batch"}
    test = pl.read_parquet(snapshot / "test.parquet")
    model = OnnxModel(out)
    np.testing.assert_allclose(model.predict(test.head(1)), model.predict(test)[:1], atol=1e-6)
    assert model.predict(test.head(0)).shape == (0,)


def test_a_folder_without_the_model_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.onnx"):
        OnnxModel(tmp_path)
