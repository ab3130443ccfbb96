"""Launchers run the training entrypoint (`python -m ml.train`) and relay its Pipes messages.

The asset only builds a `TrainingRequest`; where the process runs is the launcher's
business: a local subprocess here, a GPU pod on Kubernetes in the `k8s` profile.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import dagster as dg
from pydantic import Field


@dataclass(frozen=True)
class TrainingRequest:
    training_set: str
    out: str
    params: str

    def arguments(self) -> list[str]:
        return ["--training-set", self.training_set, "--out", self.out, "--params", self.params]


class TrainingLauncher(dg.ConfigurableResource):
    """Base of the launchers: runs a request and returns what the entrypoint reported."""

    def launch(self, context: dg.AssetExecutionContext, request: TrainingRequest) -> dg.MaterializeResult:
        raise NotImplementedError


class LocalLauncher(TrainingLauncher):
    """Runs the entrypoint as a Pipes subprocess with this interpreter (CPU, or a local GPU)."""

    cwd: str = Field(default=".", description="Working folder of the training process.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")

    def launch(self, context: dg.AssetExecutionContext, request: TrainingRequest) -> dg.MaterializeResult:
        client = dg.PipesSubprocessClient(cwd=self.cwd, env=self.env or None)
        command = [sys.executable, "-m", "ml.train", *request.arguments()]
        return client.run(context=context, command=command).get_materialize_result()
