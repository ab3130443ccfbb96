"""Configurable resources: the only place that knows where data lives and where work runs."""

from resources.alerts import AlertsResource
from resources.artifacts import ArtifactsResource
from resources.automation import FreshnessPolicy, LandingWatch, RetrainPolicy
from resources.dvc import DvcResource
from resources.lake import LakeResource
from resources.landing import LandingResource
from resources.launcher import K8sLauncher, LocalLauncher, TrainingLauncher, TrainingRequest

__all__ = [
    "AlertsResource",
    "ArtifactsResource",
    "DvcResource",
    "FreshnessPolicy",
    "K8sLauncher",
    "LakeResource",
    "LandingResource",
    "LandingWatch",
    "LocalLauncher",
    "RetrainPolicy",
    "TrainingLauncher",
    "TrainingRequest",
]
