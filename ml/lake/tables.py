"""Names of the lake's tables, each defined here once.

A table name is its path under the lake root; for an asset's table it is also the
asset key (`bronze/flights`), so the UI, the code and the storage say the same thing.
"""

from __future__ import annotations

BRONZE_FLIGHTS = "bronze/flights"
BRONZE_WEATHER = "bronze/weather"
BRONZE_PLANES = "bronze/planes"
BRONZE_AIRPORTS = "bronze/airports"
BRONZE_AIRLINES = "bronze/airlines"
FEATURES_TABLE = "features/flight_features"
REGISTRY_MODELS = "registry/models"
REGISTRY_EVENTS = "registry/events"
REGISTRY_FLAGS = "registry/flags"
PREDICTIONS_TABLE = "monitoring/predictions"
DRIFT_TABLE = "monitoring/drift"
LIVE_PERFORMANCE_TABLE = "monitoring/live_performance"
DRIFT_SIGNALS_TABLE = "monitoring/drift_signals"


def rejects_table(table: str) -> str:
    """Rows of a daily bronze table's landing files that cannot be true, with the reason."""
    return f"{table}_rejects"


def landing_log_table(table: str) -> str:
    """Per day of a daily bronze table: the landing file, its md5 and its row counts."""
    return f"{table}_landing_log"
