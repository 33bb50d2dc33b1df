"""Test-only servers and adapters. The adapters are registered for the test session (conftest.py sets
ASGI_HARNESS_ADAPTERS to ADAPTER_SPECS), the way a user registers an adapter of their own: the harness's
`--server` takes registered names only."""

ADAPTER_SPECS = (
    "tests.run.test_faults:IGNORE_TERM",
    "tests.servers.bad_signals:DOUBLE_RESPAWN",
    "tests.servers.bad_signals:GOOD",
    "tests.servers.bad_signals:HUP_DROPS",
    "tests.servers.bad_signals:HUP_EXITS",
    "tests.servers.bad_signals:HUP_IGNORED",
    "tests.servers.bad_signals:HUP_LEAKS_FDS",
    "tests.servers.bad_signals:NO_RESPAWN",
    "tests.servers.bad_signals:TERM_EXIT_1",
    "tests.servers.bad_signals:TTIN_TWO",
    "tests.servers.bad_signals:USR1_RESTARTS",
    "tests.servers.bad_launch:BAD_FLAG",
    "tests.servers.bad_launch:MISSING",
    "tests.servers.bad_launch:NO_MAIN",
    "tests.servers.detacher:DETACH",
    "tests.servers.detacher:DETACH_KEEP_FDS",
    "tests.servers.extra_uds:ELSEWHERE",
    "tests.servers.extra_uds:IN_HOME",
    "tests.servers.lost_workers:LINGER",
    "tests.servers.lost_workers:RESPAWN",
    "tests.servers.lost_workers:SLOW_RESPAWN",
    "tests.servers.raising_adapter:ADAPTER",
    "tests.servers.release_dist:ADAPTER",
    "tests.servers.seeded_flaky:SEEDED",
    "tests.servers.wrong_bind:ADAPTER",
)
