"""Software-defined assets, one module per asset-key prefix; each is a thin shell around ml/.

The asset definitions use two Dagster APIs that 1.13 marks as beta and warns about at
every import: `backfill_policy=BackfillPolicy.multi_run(...)` (bronze and features, so a
backfill of a range is a few runs under the memory budget) and `TimeWindowPartitionMapping(...,
allow_nonexistent_upstream_partitions=True)` (the features' trailing window at the first
partitions). Both are filtered here, once, where the definitions are built, with the
preview warning that Dagster's own Pipes context raises on every training run
(`PipesMessageReader.expected_writer_count`, called inside dagster, not by us); any
other beta or preview warning still shows.
"""

import warnings

import dagster as dg

for parameter in ("backfill_policy", "allow_nonexistent_upstream_partitions"):
    warnings.filterwarnings(
        "ignore", message=rf"Parameter `{parameter}` .* is currently in beta", category=dg.BetaWarning
    )
warnings.filterwarnings(
    "ignore",
    message=r"Function `PipesMessageReader.expected_writer_count` is currently in preview",
    category=dg.PreviewWarning,
)
