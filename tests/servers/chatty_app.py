"""A test app that writes 3 MiB to stderr, then fails its import: a chatty failing server (issue #16 item
17: kept run dirs must be capped). Python 3.7+, stdlib only."""

import sys

for i in range(3 * 1024):
    sys.stderr.write(f"{i:08d} " + "x" * 1014 + "\n")
sys.stderr.flush()
raise RuntimeError("chatty app: failing on purpose after 3 MiB of output")
