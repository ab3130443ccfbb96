"""The landing zone that raw daily files arrive in, and its quarantine."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ml.ingest.landing_zone import LandingZone


class LandingResource(dg.ConfigurableResource):
    """Landing files at `{root}/{dataset}/{YYYY-MM-DD}.csv` and `{root}/reference/{name}.csv`."""

    root: str = Field(description="Landing folder or s3:// URI.")
    quarantine_root: str = Field(description="Where files that cannot be ingested are moved.")
    storage_options: dict[str, str] = Field(default_factory=dict)

    def zone(self) -> LandingZone:
        return LandingZone(self.root, self.quarantine_root, self.storage_options or None)
