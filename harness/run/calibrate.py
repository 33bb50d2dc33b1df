"""How much CPU this process gets right now: the factor every run deadline is stretched by.

    factor = contention()      # 1.0 on an idle machine, ~2.5 with 5 runnable processes on 2 cores

A deadline in seconds means "this much work"; on a shared CI runner the same work takes longer because the
CPU is shared. So the deadline follows the evidence of *this* machine *now*: contention() spins for
SPIN_CPU_S of this process's own CPU time and measures the wall time it took; wall / cpu is the share of
a core the scheduler gives us (1.0 alone, 2.5 when five busy processes share two cores). The median of
SAMPLES spins, clamped to [1, MAX_FACTOR], cached for CACHE_S so a matrix does not pay it per cell.
It costs about SAMPLES x SPIN_CPU_S x factor of wall time (30 ms idle).

This replaces nothing of what the stages wait for (responses, pids, exits): it only stretches the outer
bound after which the harness gives up waiting for that evidence.
"""

import statistics
import time

#: CPU seconds of one spin sample (long enough to span several scheduler slices, short enough to be free)
SPIN_CPU_S = 0.01
SAMPLES = 3
#: no deadline is stretched more than this (a machine 6x oversubscribed is not one to wait on forever)
MAX_FACTOR = 6.0
CACHE_S = 10.0

_cache = {"t": -1e9, "factor": 1.0}


def _spin() -> float:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.process_time() - cpu0 < SPIN_CPU_S:
        pass
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    return wall / cpu if cpu > 0 else 1.0


def contention() -> float:
    """wall / cpu of a short spin (median of SAMPLES), clamped to [1, MAX_FACTOR]; cached CACHE_S."""
    now = time.monotonic()
    if now - _cache["t"] < CACHE_S:
        return _cache["factor"]
    factor = min(MAX_FACTOR, max(1.0, statistics.median(_spin() for _ in range(SAMPLES))))
    _cache["t"], _cache["factor"] = now, round(factor, 2)
    return _cache["factor"]


__all__ = ["CACHE_S", "MAX_FACTOR", "contention"]
