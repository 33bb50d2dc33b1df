"""What the pytest plugin costs every pytest session of a venv that has the harness installed.

    python bench/bench_plugin_import.py [--rounds 15] [--name bench_plugin_import]

Interleaved per round, each a fresh interpreter: `import pytest` (the peer) and `import pytest,
harness.plugin` (what the pytest11 entry point adds). Prints the median wall time of each (min-max) and
the difference; target: under 20 ms over bare pytest. Also `python -X importtime`'s own (self) time of
the modules under harness.* that the plugin import pulls in, so a heavy import shows by name.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c

PEER = "import pytest"
PLUGIN = "import pytest, harness.plugin"


def _once(code: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=c.ROOT)
    return (time.perf_counter() - t) * 1000.0


def _importtime() -> Dict[str, int]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", PLUGIN], capture_output=True, text=True,
                          check=True, cwd=c.ROOT)  # fmt: skip
    out: Dict[str, int] = {}
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if (
            len(parts) == 3
            and parts[2].split(".")[0] in ("harness", "reports")
            and parts[0].split()[-1].isdigit()
        ):
            out[parts[2]] = int(parts[0].split()[-1])
    return out


def main(argv: "List[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--name", default="bench_plugin_import")
    args = ap.parse_args(argv)
    peer: List[float] = []
    plugin: List[float] = []
    for i in range(args.rounds):
        for code, into in (
            ((PEER, peer), (PLUGIN, plugin)) if i % 2 == 0 else ((PLUGIN, plugin), (PEER, peer))
        ):
            into.append(_once(code))
    own = _importtime()
    diff = statistics.median(plugin) - statistics.median(peer)
    rows = [
        ["pytest", c.fmt(c.summary(peer, 2), digits=1)],
        ["pytest + harness.plugin", c.fmt(c.summary(plugin, 2), digits=1)],
    ]
    print(c.table(["import", "ms (median, min-max)"], rows))
    print(f"\nthe plugin adds {diff:.1f} ms (target < 20 ms)")
    print("self time of harness modules (us):", ", ".join(f"{k} {v}" for k, v in sorted(own.items())))
    data = {
        "machine": c.machine(),
        "rounds": args.rounds,
        "pytest_ms": c.summary(peer, 2),
        "pytest_plus_plugin_ms": c.summary(plugin, 2),
        "added_ms": round(diff, 2),
        "self_us": own,
    }
    print(f"results: {c.write_results(args.name, data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
