import os

from tests.servers import ADAPTER_SPECS

pytest_plugins = ["harness.plugin"]

# the test servers' adapters are registered for this session and the harness processes it starts
# (tests/servers/__init__.py); the harness itself accepts registered names only
os.environ["ASGI_HARNESS_ADAPTERS"] = ",".join(
    filter(None, [os.environ.get("ASGI_HARNESS_ADAPTERS", ""), *ADAPTER_SPECS])
)
