"""One scenario, end to end (runner.run_scenario), and the one-run mechanics it is built from: process
(launch, stop), reaper (every process has an owner), readiness and serverwatch (N worker pids answer),
faults, load (httpx), inspection (psutil / sock_diag). Import the submodule you need: this package's
import is free, so `import harness.run.readiness` does not pull in httpx.

* BASE_TIMEOUT_S - the one base timeout every deadline of a run is derived from (stages.scaled_timeout)
* check_timeout(value) -> float - ValueError (one line) unless a finite number of seconds in
  (0, MAX_TIMEOUT_S]: nan / inf would disable every deadline, 0 or less would judge a healthy server
  before it could answer
"""

import math

#: seconds; readiness for one worker on an idle machine takes well under a second (0.13 s measured)
BASE_TIMEOUT_S = 20.0
#: the longest base timeout accepted
MAX_TIMEOUT_S = 3600.0


def check_timeout(value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite number of seconds, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"must be > 0, got {value!r}")
    if seconds > MAX_TIMEOUT_S:
        raise ValueError(f"must be <= {MAX_TIMEOUT_S:.0f}, got {value!r}")
    return seconds
