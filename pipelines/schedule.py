"""The `schedule:` key shared by preprocessing and training specs (read by `gdl serve`).

    schedule: {cron: "0 3 * * *"}            # standard cron, optional timezone: Europe/Paris
    schedule: {interval_seconds: 3600}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gdl_data.errors import SpecError, SpecProblems
from gdl_data.params import Number, Param, Text, problems_in

SCHEDULE_PARAMS = {
    "cron": Param(None, (Text(),), "standard cron: minute hour day month weekday", '"0 3 * * *"'),
    "interval_seconds": Param(None, (Number(0),), "seconds between runs", 3600),
    "timezone": Param(None, (Text(),), "cron's timezone", "Europe/Paris"),
}
SCHEDULE_KEYS = tuple(SCHEDULE_PARAMS)


@dataclass(frozen=True)
class Schedule:
    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str | None = None


def parse_schedule(raw: Any, where: str = "spec") -> Schedule | None:
    if raw is None:
        return None
    example = 'schedule: {cron: "0 3 * * *"} or schedule: {interval_seconds: 3600}'
    if not isinstance(raw, Mapping) or not raw or any(k not in SCHEDULE_KEYS for k in raw):
        raise SpecError(f"{where}: schedule must be a mapping with cron or interval_seconds; write {example}")
    if ("cron" in raw) == ("interval_seconds" in raw):
        raise SpecError(f"{where}: give exactly one of cron or interval_seconds; write {example}")
    problems = problems_in(SCHEDULE_PARAMS, raw)
    if "cron" in raw and not problems and len(raw["cron"].split()) != 5:
        problems.append(f"cron must have 5 fields (minute hour day month weekday), got {raw['cron']!r}")
    if problems:
        raise SpecProblems([f"{where}: schedule.{p}" for p in problems])
    seconds = raw.get("interval_seconds")
    return Schedule(cron=raw.get("cron"), interval_seconds=None if seconds is None else float(seconds),
                    timezone=raw.get("timezone"))
