"""Farthest-point sampling (Eldar et al. 1997): well-spread subsets of points, deterministically.

Start at a given point; each next point is the one farthest from all chosen so far (its minimum
distance to them largest), ties to the lowest index. Unreachable points count as infinitely far,
so every connected component gets a point before any gets a second.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np


def farthest_point_order(distance_from: Callable[[int], np.ndarray], count: int, start: int = 0,
                         candidates: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (point, its distance row) for `count` farthest-point samples.

    distance_from: point i -> (n,) distances from i to every point (inf where unreachable); each
      row is computed once and handed back, so callers that need the rows (geodesics) pay
      nothing extra.
    count: how many (at most the number of candidates); start: the first point (default 0);
    candidates: (n,) bool, the points that may be chosen (default all); `start` must be one.
    """
    closest, open_ = None, None
    point = start
    for _ in range(count):
        row = np.asarray(distance_from(point), dtype=np.float64)
        yield point, row
        if closest is None:
            closest = row.copy()
            open_ = np.ones(len(row), bool) if candidates is None else np.array(candidates, bool)
        else:
            np.minimum(closest, row, out=closest)
        open_[point] = False
        score = np.where(open_, closest, -1.0)
        point = int(np.argmax(score))       # argmax: the first of equal maxima, inf first
        if not open_[point]:
            return


def farthest_point_sampling(pos: np.ndarray, count: int, start: int = 0) -> np.ndarray:
    """Indices (min(count, n),) of Euclidean farthest-point samples of pos (n, d), from `start`."""
    pos = np.asarray(pos, dtype=np.float64)
    count = min(count, len(pos))
    order = farthest_point_order(lambda i: np.linalg.norm(pos - pos[i], axis=1), count, start)
    return np.array([point for point, _ in order], dtype=np.int64)
