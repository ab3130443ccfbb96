"""Configurable resources: the only place that knows where data lives."""

from resources.lake import LakeResource
from resources.landing import LandingResource

__all__ = ["LakeResource", "LandingResource"]
