"""The `schedule:` key shared by preprocessing and training specs (read by `gdl serve`).

    schedule: {cron: "0 3 * * *"}            # standard cron, optional timezone: Europe/Paris
    schedule: {interval_seconds: 3600}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gdl_data.errors import SpecError

SCHEDULE_KEYS = ("cron", "interval_seconds", "timezone")


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
    if "cron" in raw:
        cron = raw["cron"]
        if not isinstance(cron, str) or len(cron.split()) != 5:
            raise SpecError(f"{where}: schedule.cron must have 5 fields (minute hour day month weekday), "
                            f"got {cron!r}")
        return Schedule(cron=cron, timezone=raw.get("timezone"))
    seconds = raw["interval_seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise SpecError(f"{where}: schedule.interval_seconds must be a positive number, got {seconds!r}")
    return Schedule(interval_seconds=float(seconds), timezone=raw.get("timezone"))
