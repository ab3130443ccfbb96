"""The monitoring tables: the prediction log's schema and appends to logs (names in `ml.lake.tables`).

The model server imports this module, so it stays light (no scikit-learn, no
matplotlib): the server image does not carry the evaluation stack.

`DeltaStore` replaces days (files of the days out, new files in, one commit), which is
right for tables a run rebuilds; a log written by many writers at once (server replicas,
monitoring runs) needs blind appends instead, which Delta commits without conflicts
between them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import polars as pl
from deltalake import CommitProperties, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from ml.lake.delta import COMMIT_ATTEMPTS, TABLE_CONFIGURATION, DeltaStore
from ml.lake.schemas import TIMESTAMP_UTC

PREDICTION_LOG_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "requested_at": TIMESTAMP_UTC,
    "position": pl.Int32(),
    "model_version": pl.Int64(),
    "snapshot_id": pl.String(),
    "carrier": pl.String(),
    "flight": pl.Int32(),
    "origin": pl.String(),
    "dest": pl.String(),
    "sched_dep_utc": TIMESTAMP_UTC,
    "tailnum": pl.String(),
    "distance": pl.Int32(),
    "flight_date": pl.Date(),
    "delay_probability": pl.Float64(),
    "role": pl.String(),
    "client": pl.String(),
    "unknown_fields": pl.String(),
}
"""One row per flight answered. `requested_at` is when the answer was logged (right after
scoring); `position` is the flight's index in its request; `flight_date` is the local New
York day of the departure; `flight` is null unless the client sent a flight number. `role`
is `champion` for the answer sent, `shadow` for the challenger's answer scored beside it
(never sent); `client` names the token that asked; `unknown_fields` lists, comma-separated,
the fields whose value the model had never seen. Rows logged before these three columns
existed hold nulls there (a null role is the champion's)."""


def append(
    store: DeltaStore,
    table: str,
    frame: pl.DataFrame,
    commit_metadata: Mapping[str, str],
    transaction: tuple[str, int] | None = None,
) -> int:
    """Append `frame` in one commit (creating the table if there is none); returns the version read after it.

    Two writers creating the same table at once collide on version 0; the loser retries
    as an append. Any other error is raised as it is. `transaction` (app id, version) is
    recorded in the same commit (a Delta `txn` action, `DeltaTable.transaction_version`),
    so a writer can tell after a crash whether its append landed.
    """
    options = dict(store.storage_options) if store.storage_options else None
    properties = CommitProperties(
        custom_metadata=dict(commit_metadata),
        max_commit_retries=50,
        app_transactions=[Transaction(*transaction)] if transaction is not None else None,
    )
    data = frame.to_arrow()
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            write_deltalake(
                store.uri(table),
                data,
                mode="append",
                # A table from before a column was added gains it (older rows read as null).
                schema_mode="merge",
                configuration=TABLE_CONFIGURATION,
                storage_options=options,
                commit_properties=properties,
            )
            break
        except (CommitFailedError, DeltaError) as exc:
            text = str(exc).lower()
            if attempt == COMMIT_ATTEMPTS - 1 or not any(w in text for w in ("already exists", "version")):
                raise
            time.sleep(0.05 * 2**attempt)
    return int(store.table(table).version())
