"""The harness: Scenario -> env -> launch -> readiness -> fault -> load -> inspection -> stop -> classify ->
ResultRecord -> report. docs/ARCHITECTURE.md draws the layers and what each may import.

* __version__ - the harness's version, written into every record
* PROJECT_ROOT - the folder holding the `harness` and `servers` packages (the capsule copies `servers` from
it,
  the reaper's guardian and the reference server run from it)
"""

import os

__version__ = "0.1.0"

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
