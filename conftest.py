import os

from tests.servers import ADAPTER_SPECS

# the harness's pytest plugin comes from its pytest11 entry point ("harness"; the project is installed by
# dev.sh and tox), and tox.ini's required_plugins says so when it is missing

# the test servers' adapters are registered for this session and the harness processes it starts
# (tests/servers/__init__.py); the harness itself accepts registered names only
os.environ["ASGI_HARNESS_ADAPTERS"] = ",".join(
    filter(None, [os.environ.get("ASGI_HARNESS_ADAPTERS", ""), *ADAPTER_SPECS])
)
