"""Matrix files (harness.campaign.config): the fault and server-argument keys, parsed from real files."""

import json
import os
from typing import Any

import pytest

from harness.campaign.config import load_matrix_file
from harness.model.errors import ConfigError

TOML = """
[[scenario]]
server = "gunicorn"
workers = 4
fault = "signal-master:HUP"
fault_repeat = 10
fault_interval = 0.5
server_args = [["--graceful-timeout", "2"], ["--graceful-timeout", "5"]]
options = [["worker_class", "asgi"]]
"""


def test_fault_and_server_arg_keys_expand(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), "m.toml")
    with open(path, "w") as fh:
        fh.write(TOML)
    scenarios = load_matrix_file(path)
    assert [sc.server_args for sc in scenarios] == [("--graceful-timeout", "2"), ("--graceful-timeout", "5")]
    assert {(sc.fault, sc.fault_repeat, sc.fault_interval) for sc in scenarios} == {
        ("signal-master:HUP", 10, 0.5)
    }
    assert scenarios[0].options == (("worker_class", "asgi"),)
    assert len({sc.scenario_id for sc in scenarios}) == 2


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ({"server": "reference", "fault_repeat": "10"}, "fault_repeat: expected an integer"),
        ({"server": "reference", "fault_interval": "soon"}, "fault_interval: expected a number of seconds"),
        ({"server": "reference", "server_args": [1, 2]}, "server_args: every item must be a string"),
    ],
)
def test_bad_fault_keys_are_one_line(tmp_path: Any, entry: Any, needle: str) -> None:
    path = os.path.join(str(tmp_path), "m.json")
    with open(path, "w") as fh:
        json.dump({"scenario": [entry]}, fh)
    with pytest.raises(ConfigError) as info:
        load_matrix_file(path)
    assert needle in str(info.value) and "\n" not in str(info.value)
