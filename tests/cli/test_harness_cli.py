"""The `harness` command line: bad input is one line + exit 2; matrix files expand as documented."""

import json
import os
import subprocess
import sys
from typing import Any, Dict, List

import pytest

from harness.campaign import config, matrix
from harness.cli import main as cli
from harness.model.errors import ConfigError
from harness.model.records import ResultRecord, Scenario, append_record


def _main(argv: List[str], capsys: pytest.CaptureFixture[str]) -> "tuple[int, str, str]":
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--workers", "0"], "must be >= 1"),
        (["run", "--workers", "two"], "expected an integer"),
        (["run", "--bind", "carrier-pigeon"], "bad bind"),
        (["run", "--bind", "fd:1"], "N must be 0 (stdin) or >= 3"),
        (["run", "--server", "nginx"], "unknown server 'nginx'"),
        (["run", "--stdin", "keyboard"], "invalid choice"),
        (["run", "--app", "no_colon"], "MODULE:ATTR"),
        (["run", "--results", "/proc/no/such/dir/r.jsonl"], "not writable"),
        (["matrix", "--config", "/no/such/matrix.toml"], "matrix file not found"),
        (["report", "/no/such/results.jsonl"], "no such results file"),
        (["matrix", "--server", "reference", "--bench", "/no/such/bench.json"], "no such bench results file"),
        (["run", "--repeat", "0"], "--repeat: must be >= 1, got 0"),
        (["run", "--repeat", "abc"], "--repeat: expected an integer, got 'abc'"),
        (["run", "--repeat", "10001"], "must be <= 10000"),
        (["run", "--confirm", "-1"], "--confirm: must be >= 0, got -1"),
        (["matrix", "--confirm", "x"], "--confirm: expected an integer"),
        (["release", "uvicorn", "0.1", "--confirm", "21"], "must be <= 20"),
        (["run", "--server", ":x"], "unknown server ':x'"),
        (["run", "--server", ".x:y"], "unknown server '.x:y'"),
        (["run", "--server", "servers.apps_broken:app"], "unknown server 'servers.apps_broken:app'"),
        (["run", "--server", "this:x"], "unknown server 'this:x'"),  # never imported: no Zen printed
        (["run", "--timeout", "nan"], "--timeout: must be a finite number of seconds"),
        (["run", "--timeout", "inf"], "--timeout: must be a finite number of seconds"),
        (["run", "--timeout", "-5"], "--timeout: must be > 0"),
        (["run", "--timeout", "0"], "--timeout: must be > 0"),
        (["run", "--timeout", "1e9"], "--timeout: must be <= 3600"),
        (["matrix", "--timeout", "nan"], "--timeout: must be a finite number of seconds"),
        (["run", "--option", "host=0.0.0.0"], "would change where the server listens"),
        (["run", "--fault", "signal-master:NOPE"], "signal-master: unknown signal 'NOPE'"),
        (["run", "--fault", "signal-master"], "needs an argument: signal-master:SIG"),
        (["run", "--fault", "kill-workers:0"], "K must be a worker count >= 1 or 'all', not '0'"),
        (["run", "--fault", "kill-workers:3"], "kill-workers:3 kills more workers than the 2 asked for"),
        (["run", "--fault", "kill-worker:1"], "takes no argument"),
        (["run", "--fault", "no-such-fault"], "unknown fault 'no-such-fault'"),
        (["run", "--fault-repeat", "-1"], "--fault-repeat: must be >= 1, got -1"),
        (["run", "--fault-repeat", "x"], "--fault-repeat: expected an integer"),
        (["run", "--fault-interval", "nan"], "--fault-interval: must be seconds in 0..60"),
        (["run", "--server-arg", "a\x00b"], "holds a NUL byte"),
        (["run", "--server-arg=--port", "--server-arg=9"], "would change where the server listens"),
        (["run", "--server-arg=--bind=0.0.0.0:80"], "would change where the server listens"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: List[str], needle: str, capsys: Any) -> None:
    code, out, err = _main(argv, capsys)
    assert code == cli.EXIT_USAGE
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_a_registered_adapter_that_fails_to_import_is_one_line(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("ASGI_HARNESS_ADAPTERS", "servers.apps_broken:app")
    code, out, err = _main(["run", "--server", "servers.apps_broken:app"], capsys)
    assert code == cli.EXIT_USAGE and out == "" and len(err.strip().splitlines()) == 1, err
    assert "cannot import servers.apps_broken" in err


def test_this_is_never_imported() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--server", "this:x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "Beautiful is better" not in proc.stdout + proc.stderr


def test_unknown_strategy_and_start_method_are_usage_errors(capsys: Any) -> None:
    code, _, err = _main(["run", "--strategy", "telepathy"], capsys)
    assert (code, "unknown strategy 'telepathy'" in err) == (2, True), err
    code, _, err = _main(["run", "--start-method", "teleport"], capsys)
    assert (code, "unknown start method 'teleport'" in err) == (2, True), err


def test_console_script_usage_error_exit_code() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--workers", "-3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "must be >= 1" in proc.stderr


def test_probe_lists_every_strategy_of_the_reference_server(capsys: Any) -> None:
    code, out, _ = _main(["probe", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    code, table, _ = _main(["probe"], capsys)
    assert code == 0
    for name in data["strategies"]:
        assert name in table


def _write(tmp_path: Any, name: str, text: str) -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


FAKE_PROBE: Dict[str, Any] = {
    "strategies": {
        "inherit": {
            "available": True,
            "reason": "",
            "start_methods": {
                "fork": {"available": True, "reason": ""},
                "spawn": {"available": True, "reason": ""},
            },
        },
        "share": {
            "available": False,
            "reason": "Windows only",
            "start_methods": {"spawn": {"available": True, "reason": ""}},
        },
    },
    "default_strategy": "inherit",
    "default_start_method": "fork",
}


def test_toml_matrix_expands_lists_sets_and_stars(tmp_path: Any) -> None:
    path = _write(
        tmp_path,
        "m.toml",
        """
[defaults]
requests = 20

[[scenario]]
server = "reference"
strategy = "*"
start_method = "*"
workers = [1, 2]

[[scenario]]
server = "uvicorn"
requirements = [["uvicorn==0.30.0"], ["uvicorn"]]
workers = 2
options = { loop = "asyncio" }
""",
    )
    scenarios = config.load_matrix_file(path, lambda python: FAKE_PROBE)
    ids = [s.scenario_id for s in scenarios]
    # "share" is unavailable: "*" expands to available strategies only
    assert sorted(i for i in ids if i.startswith("reference")) == sorted(
        [
            "reference-inherit-fork-w1",
            "reference-inherit-spawn-w1",
            "reference-inherit-fork-w2",
            "reference-inherit-spawn-w2",
        ]
    )
    ups = [s for s in scenarios if s.server == "uvicorn"]
    assert {s.requirements for s in ups} == {("uvicorn==0.30.0",), ("uvicorn",)}
    assert all(s.options == (("loop", "asyncio"),) and s.requests == 20 for s in ups)


def test_json_matrix_and_errors(tmp_path: Any) -> None:
    good = _write(tmp_path, "m.json", json.dumps({"scenario": [{"server": "uvicorn", "workers": [2, 4]}]}))
    assert [s.workers for s in config.load_matrix_file(good)] == [2, 4]
    bad_field = _write(tmp_path, "b.json", json.dumps({"scenario": [{"server": "x", "wokers": 2}]}))
    with pytest.raises(ConfigError, match="unknown field"):
        config.load_matrix_file(bad_field)
    bad_workers = _write(tmp_path, "c.json", json.dumps({"scenario": [{"workers": [0]}]}))
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        config.load_matrix_file(bad_workers)
    broken = _write(tmp_path, "d.toml", "[[scenario]\nserver=")
    with pytest.raises(ConfigError):
        config.load_matrix_file(broken)


def test_default_matrix_shape() -> None:
    scenarios = matrix.default_matrix(probe_fn=lambda python: FAKE_PROBE)
    ref = [s for s in scenarios if s.server == "reference"]
    assert len(ref) == 2 * 3  # inherit x {fork, spawn} x {1, 2, 4}
    for server in ("uvicorn", "hypercorn", "gunicorn", "granian"):
        # 1 worker is the twin that a multi-worker cell's keep-alive latency is judged against (degraded)
        assert sorted(s.workers for s in scenarios if s.server == server) == [1, 2, 4], server
    assert {s.server for s in scenarios} == {"reference", "uvicorn", "hypercorn", "gunicorn", "granian"}


def test_summary_and_resume_ids(tmp_path: Any) -> None:
    results = os.path.join(str(tmp_path), "r.jsonl")
    ok = ResultRecord(scenario=Scenario(workers=1).to_dict(), failure_class="passed")
    bad = ResultRecord(
        scenario=Scenario(workers=2).to_dict(),
        failure_class="startup-failure",
        signature="OSError: [Errno 22] Invalid argument",
    )
    append_record(results, ok)
    append_record(results, bad)
    assert matrix.done_ids(results) == {ok.scenario_id, bad.scenario_id}
    text = matrix.summary([ok, bad])
    assert "2 scenario(s): 1 passed, 1 startup-failure" in text
    assert "OSError: [Errno 22] Invalid argument" in text and bad.scenario_id in text


def test_report_command_writes_html(tmp_path: Any, capsys: Any) -> None:
    pytest.importorskip("reports.render")
    results = os.path.join(str(tmp_path), "r.jsonl")
    append_record(results, ResultRecord(scenario=Scenario().to_dict(), failure_class="passed"))
    out_html = os.path.join(str(tmp_path), "out", "report.html")
    code, out, err = _main(["report", str(tmp_path), "-o", out_html], capsys)
    assert code == 0, err
    assert "1 record(s)" in out
    with open(out_html, encoding="utf-8") as fh:
        assert "<html" in fh.read().lower()


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("ints.json", '{"scenario":[{"server":"reference","options":[1,2]}]}', "options: expected a table"),
        (
            "short.json",
            '{"scenario":[{"server":"reference","options":[["a"]]}]}',
            "options: expected a table",
        ),
        ("ints.toml", '[[scenario]]\nserver="reference"\noptions=[1,2]\n', "options: expected a table"),
        ("nested.json", '{"scenario":[{"server":"reference","options":{"a":[1]}}]}', "is not a key = string"),
        ("reqs.json", '{"scenario":[{"server":"reference","requirements":[1]}]}', "must be a string"),
        ("deep.json", "[" * 100000 + "]" * 100000, "nested too deeply"),
        ("deep.toml", "a = " + "[" * 100000 + "]" * 100000, "nested too deeply"),
        ("repeat.json", '{"repeat": 0, "scenario":[{"server":"reference"}]}', "repeat must be an integer"),
    ],
)
def test_malformed_matrix_files_are_one_line(
    tmp_path: Any, capsys: Any, name: str, text: str, needle: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    code, _, err = _main(["matrix", "--config", str(path), "--results", str(tmp_path / "r.jsonl")], capsys)
    assert code == cli.EXIT_USAGE and len(err.strip().splitlines()) == 1, err
    assert needle in err and "Traceback" not in err


def test_report_and_resume_survive_bad_records_and_say_what_they_skipped(tmp_path: Any, capsys: Any) -> None:
    good = ResultRecord(scenario=Scenario(workers=1).to_dict(), failure_class="passed", run_id="good")
    newer = ResultRecord(
        scenario=Scenario(workers=2).to_dict(), failure_class="from-a-newer-harness", run_id="n"
    )
    results = tmp_path / "r.jsonl"
    append_record(str(results), good)
    append_record(str(results), newer)
    with open(results, "a", encoding="utf-8") as fh:
        bad_type = {**good.to_dict(), "run_id": "bad-type", "load": [1, 2]}  # a list where a dict belongs
        fh.write(json.dumps(bad_type) + "\n")
        fh.write(json.dumps({**good.to_dict(), "scenario": "nope"}) + "\n")
        fh.write("garbage {\n")
        fh.write(good.to_json()[:40] + "\n")  # torn
    report = tmp_path / "r.html"
    code, out, err = _main(["report", str(results), "-o", str(report)], capsys)
    assert code == 0, err
    assert "3 record(s)" in out and "3 line(s) not records, 1 shown without a bad field" in err
    html = report.read_text(encoding="utf-8")
    assert "from-a-newer-harness" in html and "Input not shown" in html
    assert "scenario is str, not an object" in html and "not JSON (a torn or garbled line)" in html
    assert "wrong type, shown without: load" in html
    assert matrix.done_ids(str(results)) == {good.scenario_id, newer.scenario_id}
