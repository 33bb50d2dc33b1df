"""The known-issue catalog: shipped entries load; a malformed entry fails with one line naming the file."""

import os
import textwrap
from typing import Any, Dict, List

import pytest

from harness.catalog import CatalogError, entries, load_entry, parse_entry
from harness.model.records import FAILURE_CLASSES, Scenario

GOOD = textwrap.dedent(
    """
    id = "demo-1"
    title = "demo"
    links = ["https://example.org/issues/1"]
    platforms = ["linux"]
    python = ">=3.8,<3.14"

    [scenario]
    server = "uvicorn"
    python = "3.11"
    workers = 2
    bind = "uds"

    [expect]
    failure_class = "wrong-listener"
    signature = '8000'

    [[affected]]
    requirements = ["uvicorn==0.14.0"]

    [[affected]]
    requirements = ["uvicorn==0.13.4"]
    failure_class = "startup-failure"
    exit_code = 1

    [fixed]
    requirements = ["uvicorn==0.15.0"]
    """
)


def write(tmp_path: Any, text: str, name: str = "demo-1.toml") -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def test_shipped_catalog_loads_and_covers_the_required_issues() -> None:
    found = {e.id: e for e in entries()}
    for required in ("uvicorn-514", "uvicorn-1317", "hypercorn-17"):
        assert found[required].platforms == ("win32",)
    linux = [e for e in found.values() if "linux" in e.platforms]
    assert len(linux) >= 8
    for entry in found.values():
        roles = [c.expectation.role for c in entry.cases]
        assert roles[0] == "affected"
        for scenario, expectation in entry.scenarios():
            assert scenario.requirements and scenario.server == entry.scenario.server
            assert expectation.failure_class in FAILURE_CLASSES


def test_windows_lineage_versions() -> None:
    found = {e.id: e for e in entries()}
    cases = {(c.expectation.role, c.requirements) for c in found["uvicorn-1317"].cases}
    assert cases == {
        ("affected", ("uvicorn==0.16.0",)),
        ("affected", ("uvicorn==0.17.6",)),
        ("fixed", ("uvicorn==0.18.0",)),
    }
    e514 = found["uvicorn-514"]
    assert [c.requirements for c in e514.cases] == [("uvicorn==0.12.1",), ("uvicorn==0.12.2",)]
    assert e514.cases[0].expectation.signature == r"\[WSAEINVAL\]"


def test_good_entry_round_trip(tmp_path: Any) -> None:
    entry = load_entry(write(tmp_path, GOOD))
    assert entry.id == "demo-1" and entry.python == ((">=", "3.8"), ("<", "3.14"))
    pairs = entry.scenarios()
    assert [s.requirements for s, _ in pairs] == [
        ("uvicorn==0.14.0",),
        ("uvicorn==0.13.4",),
        ("uvicorn==0.15.0",),
    ]
    first, second, fixed = (e for _, e in pairs)
    assert (first.role, first.failure_class, first.signature, first.exit_code) == (
        "affected", "wrong-listener", "8000", None,
    )  # fmt: skip
    # a case override keeps the entry's signature, replaces the class, adds the exit code
    assert (second.failure_class, second.signature, second.exit_code) == ("startup-failure", "8000", 1)
    assert (fixed.role, fixed.failure_class, fixed.signature) == ("fixed", "passed", "")
    assert pairs[0][0] == Scenario(server="uvicorn", python="3.11", workers=2, bind="uds",
                                   requirements=("uvicorn==0.14.0",))  # fmt: skip


def test_expectation_mismatch_lines(tmp_path: Any) -> None:
    _, affected = load_entry(write(tmp_path, GOOD)).scenarios()[0]
    assert affected.mismatch("wrong-listener", "wrong-listener: tcp 127.0.0.1:8000 (asked uds)", 0) == ""
    assert "class 'passed' != expected 'wrong-listener'" in affected.mismatch("passed", "", 0)
    assert "does not match /8000/" in affected.mismatch("wrong-listener", "tcp 127.0.0.1:9000", 0)
    _, exit_case = load_entry(write(tmp_path, GOOD)).scenarios()[1]
    assert "exit code 3 != expected 1" in exit_case.mismatch("startup-failure", "8000", 3)


def test_skips_name_the_platform_and_python(tmp_path: Any) -> None:
    entry = load_entry(write(tmp_path, GOOD))
    assert entry.platform_skip("linux") == ""
    assert entry.platform_skip("win32") == "demo-1 reproduces on linux only; this is win32"
    assert entry.python_skip("3.11.7") == ""
    assert entry.python_skip("3.14.0") == "demo-1 needs Python >=3.8,<3.14; this is 3.14.0"
    assert entry.python_skip("3.7.16").startswith("demo-1 needs Python")


def _mutate(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


BAD: List[Dict[str, str]] = [
    {"old": 'failure_class = "wrong-listener"', "new": 'failure_class = "boom"',
     "error": "demo-1.toml: [expect].failure_class 'boom' is not a failure class"},
    {"old": 'failure_class = "wrong-listener"', "new": 'failure_class = "passed"',
     "error": "demo-1.toml: [expect].failure_class must be a failure, not 'passed'"},
    {"old": "signature = '8000'", "new": "signature = '(8000'",
     "error": "demo-1.toml: [expect].signature is not a valid regex"},
    {"old": 'id = "demo-1"', "new": 'id = "other"',
     "error": "demo-1.toml: id 'other' does not match the file name 'demo-1'"},
    {"old": 'id = "demo-1"', "new": 'id = "Demo_1"',
     "error": "demo-1.toml: id 'Demo_1' must be lowercase letters, digits, '.' and '-'"},
    {"old": 'platforms = ["linux"]', "new": 'platforms = ["windows"]',
     "error": "demo-1.toml: platforms: 'windows' is not one of linux, win32, darwin"},
    {"old": 'python = ">=3.8,<3.14"', "new": 'python = "~3.8"',
     "error": "demo-1.toml: python '~3.8': '~3.8' is not like '>=3.8'"},
    {"old": 'links = ["https://example.org/issues/1"]', "new": 'links = ["http://example.org"]',
     "error": "demo-1.toml: links: 'http://example.org' is not an https URL"},
    {"old": 'links = ["https://example.org/issues/1"]', "new": "links = []",
     "error": "demo-1.toml: links must not be empty"},
    {"old": "workers = 2", "new": "workerz = 2",
     "error": "demo-1.toml: [scenario].unknown key 'workerz'"},
    {"old": "workers = 2", "new": 'workers = "2"',
     "error": "demo-1.toml: [scenario].workers must be a int"},
    {"old": 'server = "uvicorn"\n', "new": "",
     "error": "demo-1.toml: [scenario].server is required"},
    {"old": 'requirements = ["uvicorn==0.15.0"]', "new": 'requirements = ["uvicorn==0.14.0"]',
     "error": "demo-1.toml: requirement set uvicorn==0.14.0 appears twice"},
    {"old": 'requirements = ["uvicorn==0.15.0"]', "new": 'requirements = "uvicorn==0.15.0"',
     "error": "demo-1.toml: [fixed].requirements must be a list of non-empty strings"},
    {"old": "exit_code = 1", "new": 'exit_code = "1"',
     "error": "demo-1.toml: [[affected]] #2.exit_code must be an integer"},
    {"old": 'title = "demo"', "new": 'title = "demo"\ncolour = "red"',
     "error": "demo-1.toml: unknown key 'colour'"},
    {"old": "[[affected]]\nrequirements = [\"uvicorn==0.14.0\"]\n\n[[affected]]\n"
            "requirements = [\"uvicorn==0.13.4\"]\nfailure_class = \"startup-failure\"\nexit_code = 1\n",
     "new": "", "error": "demo-1.toml: [[affected]] needs at least one requirement set"},
    {"old": "[scenario]", "new": "[scenario", "error": "demo-1.toml: not valid TOML: "},
]  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=[b["error"].split(": ", 1)[1][:40] for b in BAD])
def test_malformed_entries_fail_with_one_line(tmp_path: Any, case: Dict[str, str]) -> None:
    path = write(tmp_path, _mutate(GOOD, case["old"], case["new"]))
    with pytest.raises(CatalogError) as info:
        load_entry(path)
    message = str(info.value)
    assert message.startswith(case["error"]), message
    assert "\n" not in message


def test_entries_reports_the_bad_file(tmp_path: Any) -> None:
    write(tmp_path, GOOD)
    bad = GOOD.replace('id = "demo-1"', 'id = "demo-2"').replace('"wrong-listener"', '"boom"')
    write(tmp_path, bad, "demo-2.toml")
    with pytest.raises(
        CatalogError, match=r"^demo-2\.toml: \[expect\]\.failure_class 'boom' is not a failure class$"
    ):
        entries(str(tmp_path))
    os.remove(os.path.join(str(tmp_path), "demo-2.toml"))
    assert [e.id for e in entries(str(tmp_path))] == ["demo-1"]


def test_parse_entry_accepts_a_decoded_document() -> None:
    data = {
        "id": "x-1",
        "title": "t",
        "links": ["https://example.org"],
        "scenario": {"server": "granian", "workers": 2, "options": [["respawn_failed_workers", "1"]]},
        "expect": {"failure_class": "startup-failure"},
        "affected": [{"requirements": ["granian==2.8.7"]}],
    }
    entry = parse_entry(data, "x-1.toml")
    assert entry.scenario.options == (("respawn_failed_workers", "1"),)
    assert entry.platform_skip("darwin") == ""  # no platforms = everywhere
