"""An automation condition that Dagster's built-ins cannot say: "this day's own upstream partition exists".

`any_deps_missing()` looks at every partition a partition mapping names, so a day whose
features read a 28-day window of flights would wait for all 28; this condition looks only
at the same day of one upstream asset, so later days are built from the days present
(the window's gaps are named by the features' `window_complete` check) and rebuilt when
a missing day lands (its update reaches every day whose window holds it).
"""

from __future__ import annotations

import dagster as dg


class SameDayMaterialized(dg.AutomationCondition):
    """True for a partition whose partition of `upstream` (same key) has been materialized.

    Arbitrary Python conditions run in the code server: the sensor that evaluates this
    one needs `use_user_code_server=True`.
    """

    def __init__(self, upstream: dg.AssetKey) -> None:
        self.upstream = upstream

    @property
    def name(self) -> str:
        return f"same_day_of_{self.upstream.to_user_string()}_materialized"

    @property
    def description(self) -> str:
        return f"its own day of {self.upstream.to_user_string()} is materialized"

    @property
    def requires_cursor(self) -> bool:
        return False

    async def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        view = context.asset_graph_view
        if context.candidate_subset.is_empty:
            return dg.AutomationResult(context, true_subset=context.get_empty_subset())
        full = view.get_full_subset(key=self.upstream)
        missing = await view.compute_missing_subset(key=self.upstream, from_subset=full)
        present = full.compute_difference(missing).expensively_compute_partition_keys()
        candidates = context.candidate_subset.expensively_compute_partition_keys()
        partitions = context.asset_graph.get(context.key).partitions_def
        true_subset = view.get_subset_from_partition_keys(
            key=context.key, partitions_def=partitions, partition_keys=candidates & present
        )
        return dg.AutomationResult(context, true_subset=true_subset)
