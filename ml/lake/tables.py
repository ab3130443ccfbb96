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


DAY_COLUMNS: dict[str, str] = {
    BRONZE_FLIGHTS: "flight_date",
    BRONZE_WEATHER: "obs_date",
    **{
        companion(t): "day"
        for t in (BRONZE_FLIGHTS, BRONZE_WEATHER)
        for companion in (rejects_table, landing_log_table)
    },
    FEATURES_TABLE: "flight_date",
    DRIFT_TABLE: "as_of",
    LIVE_PERFORMANCE_TABLE: "flight_date",
}
"""The daily tables (written by `DeltaStore.replace_days`) and their day column.

Maintenance keeps these in day-range files (`ml.lake.layout`) so that replacing a day stays
as cheap as the table grows; every other table is compacted by size.
"""


def day_column(table: str) -> str | None:
    """The column a daily table is replaced by, or None for a table that is not written by day."""
    return DAY_COLUMNS.get(table)
