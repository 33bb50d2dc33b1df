"""The hook the pytest plugin (harness.plugin) adds: implement it in a conftest.py or a plugin.

def pytest_harness_record(item, record):
    ...  # every ResultRecord a test's run_scenario produced, as it is produced
"""

from typing import Any


def pytest_harness_record(item: Any, record: Any) -> None:
    """Called once per record the `run_scenario` fixture produced in `item` (a pytest.Item); `record` is
    the harness.model.records.ResultRecord. The return value is ignored."""


__all__ = ["pytest_harness_record"]
