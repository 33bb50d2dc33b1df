"""A test app that fails its import after writing every hostile payload to stderr (tests/_payloads.py), so
the server's output, the verdict's signature and reason carry them. Python 3.7+, stdlib only."""

import sys

from tests._payloads import PAYLOADS

for name, payload in sorted(PAYLOADS.items()):
    sys.stderr.write(f"payload {name}: {payload}\n")
sys.stderr.flush()
raise RuntimeError("hostile app: " + PAYLOADS["osc-title"] + PAYLOADS["fence"] + PAYLOADS["bidi"])
