"""`gdl serve`: register a deployment per spec, with the spec's schedule, and serve them.

Preprocessing specs become deployments of `gdl-preprocess`, training specs of `gdl-train`,
each named after its spec. Chaining: a training spec with `after: <preprocess spec name>` is
started by that preprocessing flow when it succeeds (the flow calls `run_deployment` for it):
a parent-flow-style chain we chose over event triggers because it needs no automation service
and is visible in the preprocessing run's own logs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from gdl_data.errors import SpecError
from pipelines.schedule import Schedule
from pipelines.spec import load_spec, read_spec_file
from pipelines.train_spec import load_train_spec
from pipelines.validate import expand, is_training_spec


@dataclass(frozen=True)
class DeploymentPlan:
    flow: str                      # "preprocess" | "train"
    name: str
    spec_path: str
    schedule: Schedule | None
    parameters: dict[str, Any]


def spec_files(paths: list[str]) -> list[str]:
    return [os.path.abspath(p) for p in expand(paths)]


def plan_deployments(paths: list[str]) -> list[DeploymentPlan]:
    """Validate every spec and work out the deployments, their schedules and chains."""
    pre, train = [], []
    for path in spec_files(paths):
        if is_training_spec(read_spec_file(path)):
            train.append(load_train_spec(path))
        else:
            pre.append(load_spec(path))
    names = {s.name for s in pre}
    for t in train:
        if t.after and t.after not in names:
            raise SpecError(f"{t.spec_path}: after: '{t.after}' names no preprocessing spec given to "
                            f"gdl serve; known: {', '.join(sorted(names)) or 'none'}")
    plans = [DeploymentPlan("preprocess", s.name, s.spec_path, s.schedule,
                            {"spec_path": s.spec_path,
                             "then": [f"gdl-train/{t.name}" for t in train if t.after == s.name]})
             for s in pre]
    # `processes` is a deployment parameter: a run started from the UI or API may ask for another N.
    plans += [DeploymentPlan("train", t.name, t.spec_path, t.schedule,
                             {"spec_path": t.spec_path, "processes": t.processes})
              for t in train]
    return plans


def to_deployments(plans: list[DeploymentPlan]) -> list:
    from flows.preprocess import preprocess_flow
    from flows.train import train_flow
    flows = {"preprocess": preprocess_flow, "train": train_flow}
    deployments = []
    for p in plans:
        kwargs: dict[str, Any] = {}
        if p.schedule and p.schedule.cron:
            kwargs["cron"] = p.schedule.cron
        elif p.schedule:
            kwargs["interval"] = p.schedule.interval_seconds
        deployments.append(flows[p.flow].to_deployment(name=p.name, parameters=p.parameters,
                                                       tags=["gdl-data", p.flow], **kwargs))
    return deployments


def serve_specs(paths: list[str], limit: int | None = None) -> None:
    """Register and serve until interrupted (Ctrl-C); runs execute in local subprocesses."""
    from prefect import serve
    serve(*to_deployments(plan_deployments(paths)), limit=limit)
