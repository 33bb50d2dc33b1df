"""One scenario, end to end (runner.run_scenario), and the one-run mechanics it is built from: process
(launch, stop), reaper (every process has an owner), readiness and serverwatch (N worker pids answer),
faults, load (httpx), inspection (psutil / sock_diag). Import the submodule you need: this package's
import is free, so `import harness.run.readiness` does not pull in httpx.

* BASE_TIMEOUT_S - the one base timeout every deadline of a run is derived from (stages.scaled_timeout)
"""

#: seconds; readiness for one worker on an idle machine takes well under a second (0.13 s measured)
BASE_TIMEOUT_S = 20.0
