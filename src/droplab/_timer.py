"""Timing, written once: the best of repeated calls (wall or CPU time), and a stopwatch.

Benchmarks keep the best of several calls: on a shared machine the neighbours only ever add
time, so the minimum is the least noisy estimate of a call's own cost. With
``clock=time.process_time`` (this process's CPU time) the neighbours' share of the cores is not
counted at all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

__all__ = ["Stopwatch", "best_of", "best_of_each"]


class Stopwatch:
    """Seconds since it was made (or last restarted), on ``clock`` (default: wall time).

    Examples::

        >>> watch = Stopwatch()
        >>> watch.seconds() >= 0
        True
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._start = clock()

    def seconds(self) -> float:
        """Seconds elapsed."""
        return self._clock() - self._start

    def restart(self) -> float:
        """Seconds elapsed, then start again from now."""
        now = self._clock()
        elapsed, self._start = now - self._start, now
        return elapsed


def best_of_each(
    fns: Mapping[str, Callable[[], object]],
    repeats: int,
    *,
    clock: Callable[[], float] = time.perf_counter,
    warmup: bool = True,
) -> dict[str, float]:
    """The best seconds of one call of each function over ``repeats`` rounds, the functions
    called in turn within a round (interleaved, so that a noisy moment hits them all alike).
    ``warmup``: call each once, untimed, first."""
    if warmup:
        for fn in fns.values():
            fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            best[name] = min(best[name], clock() - start)
    return best


def best_of(
    fn: Callable[[], object],
    repeats: int = 5,
    *,
    clock: Callable[[], float] = time.perf_counter,
    warmup: bool = False,
) -> float:
    """The best seconds of ``repeats`` calls of ``fn``."""
    return best_of_each({"fn": fn}, repeats, clock=clock, warmup=warmup)["fn"]


def timings_of_each(
    fns: Mapping[str, Callable[[], object]], rounds: int, *, warmup: int = 0
) -> dict[str, dict[str, list[float]]]:
    """Every timing of each function over ``rounds`` rounds, one call of each per round, the order
    rotated each round; both clocks, ``{"cpu": [...], "wall": [...]}`` per function: ``cpu``
    (``time.process_time``, what the call costs this process, unaffected by waiting for a core
    that other work holds) and ``wall``. For medians and spreads; ``best_of_each`` for a best."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: {"cpu": [], "wall": []} for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            c0, t0 = time.process_time(), time.perf_counter()
            fns[name]()
            times[name]["wall"].append(time.perf_counter() - t0)
            times[name]["cpu"].append(time.process_time() - c0)
    return times
