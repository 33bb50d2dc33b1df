"""The restart policy for workers that die after ready: a budget of restarts in a sliding window, and an
exponential backoff. Pure logic (time is passed in), so it is unit-tested without processes.

* RestartBudget(limit=5, window=60.0, first=0.1, maximum=5.0)
    * backoff(now) - seconds to wait before the next restart, or None when `limit` restarts already
      happened within the last `window` seconds (-> WORKER_CRASH_LOOP)
    * record(now) - a restart happened
    * count - restarts recorded in total (the `restarts` field of `worker-restart`)
"""

from typing import List, Optional


class RestartBudget:
    """At most `limit` restarts per `window` seconds; the n-th restart in the window waits
    min(first * 2**n, maximum) seconds."""

    def __init__(
        self, limit: int = 5, window: float = 60.0, first: float = 0.1, maximum: float = 5.0
    ) -> None:
        self.limit = limit
        self.window = window
        self.first = first
        self.maximum = maximum
        self.count = 0
        self._times: List[float] = []

    def _recent(self, now: float) -> int:
        self._times = [t for t in self._times if now - t < self.window]
        return len(self._times)

    def backoff(self, now: float) -> Optional[float]:
        recent = self._recent(now)
        if recent >= self.limit:
            return None
        return min(self.first * (2.0**recent), self.maximum)

    def record(self, now: float) -> None:
        self._times.append(now)
        self.count += 1


__all__ = ["RestartBudget"]
