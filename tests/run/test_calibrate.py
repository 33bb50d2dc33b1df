"""harness.run.calibrate: the CPU share measured beside real busy processes."""

import os
import subprocess
import sys

from harness.run import calibrate


def test_contention_rises_beside_busy_processes(monkeypatch) -> None:
    monkeypatch.setattr(calibrate, "_cache", {"t": -1e9, "factor": 1.0})
    n = 3 * (os.cpu_count() or 1)
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(n)
    ]
    try:
        busy = calibrate.contention()
    finally:
        for h in hogs:
            h.kill()
        for h in hogs:
            h.wait(timeout=30)
    assert 1.5 <= busy <= calibrate.MAX_FACTOR, busy  # 4 runnable per core: well under a full core
    monkeypatch.setattr(calibrate, "_cache", {"t": -1e9, "factor": 1.0})
    assert 1.0 <= calibrate.contention() <= calibrate.MAX_FACTOR
