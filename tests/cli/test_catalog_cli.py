"""harness.cli.catalog_cmd: selecting entries, the last verdict per platform, the listing, and one real
`--run` of a catalog entry (real envs, real servers)."""

import argparse
import dataclasses
import io
import json
import os
import sys
import textwrap
from typing import Any, Dict, List

import pytest

from harness.catalog import entries, last_verdicts, select
from harness.cli.catalog_cmd import add_parser, list_catalog, run
from harness.model.errors import UsageError
from harness.model.records import ResultRecord, Scenario

pytestmark = pytest.mark.timeout(600)


def _record(scenario: Scenario, cls: str, sig: str = "", plat: str = "linux", **kw: Any) -> ResultRecord:
    return ResultRecord(
        scenario=scenario.to_dict(),
        failure_class=cls,
        signature=sig,
        platform={"sys_platform": plat},
        started_at=kw.pop("started_at", "2026-11-24T06:00:00+00:00"),
        **kw,
    )


def _parse(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["catalog", *argv])


def test_select_exact_glob_and_unknown() -> None:
    all_entries = entries()
    assert [e.id for e in select(all_entries, ["uvicorn-1009-uds"])] == ["uvicorn-1009-uds"]
    assert [e.id for e in select(all_entries, ["uvicorn-1009-*"])] == ["uvicorn-1009-fd", "uvicorn-1009-uds"]
    assert len(select(all_entries, [])) == len(all_entries)
    with pytest.raises(ValueError, match="no catalog entry matches 'nope'"):
        select(all_entries, ["nope"])


def test_last_verdict_is_per_scenario_and_platform_in_file_order() -> None:
    a = Scenario(server="uvicorn", requirements=("uvicorn==0.14.0",), bind="uds", python="3.11")
    b = dataclasses.replace(a, requirements=("uvicorn==0.15.0",))
    records = [
        _record(a, "passed"),
        _record(a, "wrong-listener", "wrong-listener: tcp 127.0.0.1:8000 (asked uds)"),
        _record(a, "partial-workers", plat="win32"),
        _record(b, "passed"),
    ]
    last = last_verdicts(records)
    assert last[a.scenario_id]["linux"].failure_class == "wrong-listener"
    assert last[a.scenario_id]["win32"].failure_class == "partial-workers"
    assert last[b.scenario_id]["linux"].failure_class == "passed"


def test_listing_says_ok_mismatch_and_no_record() -> None:
    entry = select(entries(), ["uvicorn-1009-uds"])[0]
    affected = entry.scenarios()[0][0]
    records = [
        _record(affected, "wrong-listener", "wrong-listener: tcp 127.0.0.1:8000 (asked uds)"),
        _record(affected, "startup-failure", "[EADDRINUSE] ...", plat="darwin"),
    ]
    out = io.StringIO()
    list_catalog([entry], records, out)
    text = out.getvalue()
    assert text.startswith("uvicorn-1009-uds  (linux, darwin)  uvicorn <=0.14")
    assert "linux: wrong-listener wrong-listener: tcp 127.0.0.1:8000 (asked uds) (ok;" in text
    assert "darwin: startup-failure [EADDRINUSE] ... (MISMATCH: class 'startup-failure'" in text
    lines = text.splitlines()
    fixed_at = next(i for i, line in enumerate(lines) if line.strip().startswith("fixed"))
    assert lines[fixed_at + 1].strip() == "(no record)"


def test_list_command_reads_results(tmp_path: "os.PathLike[str]") -> None:
    entry = select(entries(), ["hypercorn-42"])[0]
    results = os.path.join(str(tmp_path), "r.jsonl")
    scenario = entry.scenarios()[0][0]
    with open(results, "w", encoding="utf-8") as fh:
        fh.write(_record(scenario, "startup-failure", "TypeError: x", exit_code=0).to_json() + "\n")
        fh.write("{torn\n")
    out = io.StringIO()
    assert run(_parse(["hypercorn-42", "--results", results]), out=out) == 0
    assert "1 entries; verdicts from" in out.getvalue()
    assert "linux: startup-failure TypeError: x (MISMATCH: signature" in out.getvalue()
    with pytest.raises(UsageError, match="no catalog entry"):
        run(_parse(["no-such-entry"]), out=io.StringIO())


ENTRY = textwrap.dedent(
    """
    id = "demo-skip"
    title = "a skipped entry"
    links = ["https://example.org/1"]
    skip = "needs a fault the runner lacks"
    [scenario]
    server = "uvicorn"
    [expect]
    failure_class = "respawn-loop"
    [[affected]]
    requirements = ["uvicorn==0.30.0"]
    """
)


def test_run_skips_what_the_collector_skips(tmp_path: "os.PathLike[str]") -> None:
    folder = os.path.join(str(tmp_path), "cat")
    os.makedirs(folder)
    with open(os.path.join(folder, "demo-skip.toml"), "w", encoding="utf-8") as fh:
        fh.write(ENTRY)
    results = os.path.join(str(tmp_path), "r.jsonl")
    out = io.StringIO()
    assert run(_parse(["--run", "--dir", folder, "--results", results]), out=out) == 0
    assert (
        "skip  demo-skip affected uvicorn==0.30.0: demo-skip: needs a fault the runner lacks"
        in out.getvalue()
    )
    assert "0 run, 0 as expected, 0 not, 1 skipped" in out.getvalue()
    assert not os.path.exists(results)


@pytest.mark.slow
def test_run_real_entry_appends_records(tmp_path: "os.PathLike[str]") -> None:
    """hypercorn leaves its UDS file behind after SIGTERM (both catalogued releases): run for real."""
    results = os.path.join(str(tmp_path), "catalog.jsonl")
    out = io.StringIO()
    assert run(_parse(["--run", "hypercorn-uds-left-behind", "--results", results]), out=out) == 0
    text = out.getvalue()
    assert text.count("run   hypercorn-uds-left-behind affected") == 2, text
    assert "2 run, 2 as expected, 0 not, 0 skipped" in text, text
    with open(results, encoding="utf-8") as fh:
        rows: List[Dict[str, Any]] = [json.loads(line) for line in fh]
    # each leak is re-run once before it is called (--confirm 1): two runs per case, one group each
    assert sorted(r["installed"]["hypercorn"] for r in rows) == ["0.14.2", "0.14.2", "0.18.0", "0.18.0"]
    assert {r["failure_class"] for r in rows} == {"leak"}
    assert len({r["attempt"]["group"] for r in rows}) == 2
    assert text.count("(confirmed)") == 2 and text.count("[2 run(s)") == 2, text
    listing = io.StringIO()
    run(_parse(["hypercorn-uds-left-behind", "--results", results]), out=listing)
    assert listing.getvalue().count("linux: leak") == 2


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["sweep"], "catalog sweep takes one entry id"),
        (["sweep", "uvicorn-1009-*"], "matches 2 entries; name one"),
        (["sweep", "nope"], "no catalog entry matches 'nope'"),
        (["sweep", "hypercorn-42", "--python", "9.9"], "no Python 9.9 found"),
        (["sweep", "hypercorn-42", "--results", "a.jsonl", "--results", "b.jsonl"], "given once for a sweep"),
        (["pages", "--results", "/nonexistent/x.jsonl"], "no such results file or directory"),
        (["--results", "a.jsonl", "--results", "b.jsonl"], "several only with `pages`"),
    ],
)
def test_sweep_and_pages_bad_input_is_one_line(argv: List[str], says: str) -> None:
    with pytest.raises(UsageError) as err:
        run(_parse(argv), out=io.StringIO())
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(sys.platform == "win32", reason="uvicorn-514 reproduces on Windows: it would run there")
def test_sweep_of_an_entry_for_another_os_says_it_waits_for_that_runner() -> None:
    out = io.StringIO()
    assert run(_parse(["sweep", "uvicorn-514"]), out=out) == 0
    assert out.getvalue().startswith("unsupported: uvicorn-514 reproduces on win32 only")
    assert "waits for a runner of that OS" in out.getvalue()
