"""How a run executes its steps: in one process (the default) or one Kubernetes pod per step.

`PLATFORM_EXECUTOR=k8s_job` opts into `dagster_k8s.k8s_job_executor`: each step becomes a
Kubernetes Job sized by the `dagster-k8s/config` tags of its asset (`assets.step_resources`),
so a year of features gets the memory it needs without every light step asking for as much.
It only makes sense where runs are Kubernetes Jobs already, so it needs the `k8s` profile.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

EXECUTOR_VARIABLE = "PLATFORM_EXECUTOR"
EXECUTORS = ("in_process", "k8s_job")


def build_executor(env: Mapping[str, str]) -> dg.ExecutorDefinition:
    name = env.get(EXECUTOR_VARIABLE, "in_process")
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_VARIABLE}={name!r} is not one of {', '.join(EXECUTORS)}")
    if name == "in_process":
        # Steps are light or launch their own process (training), so one process per run is
        # enough by default; a process per step costs seconds of start-up for steps of 0.1 s.
        return dg.in_process_executor
    if env.get("PLATFORM_PROFILE", "local") != "k8s":
        raise ValueError(
            f"{EXECUTOR_VARIABLE}=k8s_job runs steps as Kubernetes Jobs: it needs PLATFORM_PROFILE=k8s"
        )
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor
