"""Asset selections by the keys a reader sees in the UI (`bronze/flights`)."""

import dagster as dg


def select(*keys: str) -> dg.AssetSelection:
    """The assets with these user-facing keys; `AssetSelection.assets` alone would read `a/b` as one part."""
    return dg.AssetSelection.assets(*(dg.AssetKey.from_user_string(k) for k in keys))
