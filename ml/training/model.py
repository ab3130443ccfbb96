"""The delay network: embeddings for the categories next to the numbers, then an MLP to one logit.

Embeddings rather than one-hot columns so a destination seen in few flights shares
statistical strength through a small learned vector; the MLP output is a logit, not
a probability, so training uses the numerically stable `BCEWithLogitsLoss` and the
sigmoid is added only in the exported model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """What rebuilds the architecture around a `model.pt` state dict (saved as `model.json`)."""

    cardinalities: tuple[int, ...]
    numeric_width: int
    embedding_dim: int
    hidden_sizes: tuple[int, ...]
    dropout: float
    temperature: float = 1.0
    """Divides the logit before the sigmoid: fitted on the validation split after training
    (`ml.training.calibration`), so the exported probabilities are calibrated and the ranking
    is untouched. 1.0 in files written before calibration existed."""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ModelConfig:
        return cls(
            cardinalities=tuple(int(v) for v in data["cardinalities"]),  # type: ignore[union-attr]
            numeric_width=int(data["numeric_width"]),  # type: ignore[arg-type]
            embedding_dim=int(data["embedding_dim"]),  # type: ignore[arg-type]
            hidden_sizes=tuple(int(v) for v in data["hidden_sizes"]),  # type: ignore[union-attr]
            dropout=float(data["dropout"]),  # type: ignore[arg-type]
            temperature=float(data.get("temperature", 1.0)),  # type: ignore[arg-type]
        )


def embedding_width(cardinality: int, embedding_dim: int) -> int:
    """At most `embedding_dim`, and no wider than the column has values (3 airports need no 16 dims)."""
    return max(1, min(embedding_dim, cardinality - 1))


class TabularNet(nn.Module):
    """Embeddings per categorical column, concatenated with the numeric vector, through an MLP.

    Each hidden block is Linear, BatchNorm, ReLU, Dropout: BatchNorm keeps the
    standardized inputs and the embeddings on one scale as training moves them, which
    lets a larger learning rate work with big batches.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.ModuleList(
            nn.Embedding(n, embedding_width(n, config.embedding_dim)) for n in config.cardinalities
        )
        width = config.numeric_width + sum(e.embedding_dim for e in self.embeddings)
        layers: list[nn.Module] = []
        for hidden in config.hidden_sizes:
            layers += [
                nn.Linear(width, hidden),
                nn.BatchNorm1d(hidden),
                nn.ReLU(),
                nn.Dropout(config.dropout),
            ]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """Logits [N] from codes (int64 [N, C]) and numbers (float32 [N, F])."""
        embedded = [embedding(categorical[:, i]) for i, embedding in enumerate(self.embeddings)]
        return self.mlp(torch.cat([*embedded, numeric], dim=1)).squeeze(1)


class ProbabilityModel(nn.Module):
    """The network with its calibration and a sigmoid on top: what the ONNX file computes.

    The temperature is part of the exported graph, so a server running `model.onnx` answers
    the calibrated probability the gate judged, with no second step to forget.
    """

    def __init__(self, net: TabularNet) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("temperature", torch.tensor(net.config.temperature, dtype=torch.float32))

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(categorical, numeric) / self.temperature)
