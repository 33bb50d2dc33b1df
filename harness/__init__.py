"""The harness: Scenario -> env -> ServerProcess -> load -> inspection -> stop -> classify -> ResultRecord."""

__version__ = "0.1.0"
