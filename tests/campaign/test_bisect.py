"""harness.campaign.bisection and harness.cli.bisect_cmd: the pure search (fake oracles, UNIT tests of the
algorithm only), the judge, the
version orientation, and one real small bisect over released uvicorn versions (slow)."""

import argparse
import io
import json
import os
from typing import Callable, Dict, List, Sequence

import pytest

from harness.campaign.bisection import (
    BAD,
    GOOD,
    SKIP,
    BisectError,
    Judge,
    orient,
    pinned_requirements,
    recorded_env_errors,
    search,
)
from harness.cli.bisect_cmd import add_parser, run
from harness.model.errors import UsageError
from harness.model.records import ResultRecord, Scenario, append_record

pytestmark = pytest.mark.timeout(600)


def oracle(outcomes: Sequence[str], calls: List[int]) -> Callable[[int], str]:
    """A fake oracle over a fixed list of outcomes, recording which indices were asked."""

    def test(i: int) -> str:
        calls.append(i)
        return outcomes[i]

    return test


def world(n: int, first_bad: int, skips: Sequence[int] = ()) -> List[str]:
    return [SKIP if i in skips else (BAD if i >= first_bad else GOOD) for i in range(n)]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 17, 33, 100])
def test_every_boundary_is_found_with_log2_tests(n: int) -> None:
    for first_bad in range(1, n):
        calls: List[int] = []
        result = search(n, oracle(world(n, first_bad), calls))
        assert (result.last_good, result.first_bad) == (first_bad - 1, first_bad)
        assert result.exact
        assert len(calls) == len(set(calls)), "an index was tested twice"
        assert len(calls) <= 2 + (n - 2).bit_length()
        assert calls[:2] == [n - 1, 0], "the bad end is tested first, then the good end"


def test_skip_in_the_middle_probes_a_neighbour() -> None:
    calls: List[int] = []
    outcomes = world(9, first_bad=6, skips=[4])
    result = search(9, oracle(outcomes, calls))
    assert (result.last_good, result.first_bad) == (5, 6)
    assert 4 in calls and result.skipped == (4,)
    assert result.exact  # 4 is not between 5 and 6
    after = calls[calls.index(4) + 1]
    assert after in (3, 5), "the next probe is a neighbour of the skipped middle"


def test_skips_at_the_boundary_give_a_range() -> None:
    outcomes = world(10, first_bad=6, skips=[5, 6])
    # 6 is really bad but cannot be tested: the answer is "between 4 and 7"
    result = search(10, oracle(outcomes, []))
    assert (result.last_good, result.first_bad) == (4, 7)
    assert result.untested_between == (5, 6)
    assert not result.exact


def test_skipped_bad_end_moves_to_its_neighbour() -> None:
    outcomes = world(6, first_bad=3, skips=[5])
    calls: List[int] = []
    result = search(6, oracle(outcomes, calls))
    assert calls[:2] == [5, 4]
    assert (result.last_good, result.first_bad) == (2, 3)


def test_skipped_good_end_moves_to_its_neighbour() -> None:
    outcomes = world(6, first_bad=4, skips=[0, 1])
    result = search(6, oracle(outcomes, []))
    assert (result.last_good, result.first_bad) == (3, 4)
    assert result.skipped == (0, 1)


def test_every_middle_skipped() -> None:
    outcomes = [GOOD, SKIP, SKIP, SKIP, BAD]
    result = search(5, oracle(outcomes, []))
    assert (result.last_good, result.first_bad) == (0, 4)
    assert result.untested_between == (1, 2, 3)


@pytest.mark.parametrize(
    "outcomes, message",
    [
        ([GOOD, GOOD], "bad end is not bad"),
        ([BAD, BAD], "good end is bad too"),
        ([SKIP, SKIP, SKIP], "every one was a skip"),
        ([SKIP, SKIP, BAD], "no version on the good side"),
        ([GOOD, GOOD, SKIP], r"neighbour of the bad end \(#1\) is not bad"),
        ([SKIP, BAD, BAD], r"neighbour of the good end \(#1\) is bad too"),
    ],
)
def test_no_answer(outcomes: List[str], message: str) -> None:
    with pytest.raises(BisectError, match=message):
        search(len(outcomes), oracle(outcomes, []))


def test_bad_end_skipped_and_its_neighbour_bad_is_an_answer() -> None:
    result = search(3, oracle([GOOD, BAD, SKIP], []))
    assert (result.last_good, result.first_bad) == (0, 1)


def test_needs_two_versions_and_valid_outcomes() -> None:
    with pytest.raises(BisectError):
        search(1, lambda i: BAD)
    with pytest.raises(ValueError, match="maybe"):
        search(3, lambda i: "maybe")


def test_non_monotonic_world_still_ends_on_an_adjacent_pair() -> None:
    # good bad good bad: bisection finds *a* transition, and its two ends really are good then bad
    outcomes = [GOOD, BAD, GOOD, BAD, BAD]
    result = search(5, oracle(outcomes, []))
    assert outcomes[result.last_good] == GOOD and outcomes[result.first_bad] == BAD
    assert result.first_bad == result.last_good + 1


VERSIONS = ["0.11.0", "0.12.0", "0.13.0", "0.14.0", "0.15.0", "0.16.0"]


def test_orient_regression_and_fix() -> None:
    assert orient(VERSIONS, "0.12.0", "0.14.0") == (["0.12.0", "0.13.0", "0.14.0"], "regression")
    assert orient(VERSIONS, "0.15.0", "0.12.0") == (["0.15.0", "0.14.0", "0.13.0", "0.12.0"], "fix")
    with pytest.raises(BisectError, match="not a released version"):
        orient(VERSIONS, "0.15.0", "9.9.9")
    with pytest.raises(BisectError, match="same version"):
        orient(VERSIONS, "0.15.0", "0.15.0")


def test_fix_search_end_to_end_with_fake_versions() -> None:
    # a fix in 0.15.0: in the good-to-bad ordering (newest first) the boundary is 0.15.0 | 0.14.0
    fixed_in = VERSIONS.index("0.15.0")
    ordered, direction = orient(VERSIONS, "0.16.0", "0.11.0")
    assert direction == "fix"
    result = search(len(ordered), lambda i: BAD if VERSIONS.index(ordered[i]) < fixed_in else GOOD)
    assert ordered[result.last_good] == "0.15.0" and ordered[result.first_bad] == "0.14.0"


def test_judge() -> None:
    j = Judge()
    j.define("wrong-listener", "wrong-listener: tcp 127.0.0.1:8000 (asked uds)")
    assert j.judge("wrong-listener", "wrong-listener: tcp 127.0.0.1:8000 (asked uds)") == (BAD, "")
    assert j.judge("passed", "")[0] == GOOD
    assert j.judge("startup-failure", "exit 1") == (GOOD, "not the bad class")
    assert j.judge("wrong-listener", "wrong-listener: tcp 127.0.0.1:9000")[0] == GOOD
    for cls in ("env-error", "unsupported", "harness-error"):
        assert j.judge(cls, "x")[0] == SKIP
    k = Judge(bad_class="respawn-loop", bad_signature=r"startup failed")
    assert k.judge("respawn-loop", "Application startup failed. Exiting.")[0] == BAD
    assert k.judge("respawn-loop", "something else")[0] == GOOD
    with pytest.raises(RuntimeError):
        Judge().judge("passed", "")


def test_requirements_replace_only_the_bisected_distribution() -> None:
    pinned = ["gunicorn==23.0.0", "uvicorn==0.36.0", "uvicorn_worker==0.3.0"]
    got = pinned_requirements("uvicorn-worker", pinned, ("gunicorn", "uvicorn-worker"), "0.4.0")
    assert got == ("gunicorn==23.0.0", "uvicorn==0.36.0", "uvicorn-worker==0.4.0")
    assert pinned_requirements("uvicorn", [], ("uvicorn",), "0.14.0") == ("uvicorn==0.14.0",)
    assert pinned_requirements("gunicorn", [], ("gunicorn", "uvicorn-worker"), "23.0.0") == (
        "uvicorn-worker",
        "gunicorn==23.0.0",
    )


def _parse(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bisect", *argv])


@pytest.mark.slow
@pytest.mark.fixed_port(8000)  # 0.13.4 / 0.14.0 bind 127.0.0.1:8000 whatever --uds says
def test_real_bisect_finds_the_uds_fix(tmp_path: "os.PathLike[str]") -> None:
    """Regression for https://github.com/Kludex/uvicorn/pull/1009: a real bisect over 0.13.4..0.16.0
    (4 releases, real envs and servers) names 0.15.0 as the first release where --uds is honoured."""
    results = os.path.join(str(tmp_path), "bisect.jsonl")
    argv = "uvicorn --bad 0.13.4 --good 0.16.0 --bind uds --python 3.11 --requests 40"
    args = _parse([*argv.split(), "--keepalive-requests", "10", "--results", results])
    out = io.StringIO()
    assert run(args, out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "first good (first fixed release): uvicorn==0.15.0" in text, text
    assert "last bad:   uvicorn==0.14.0" in text, text
    with open(results, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    by_version: Dict[str, str] = {r["installed"].get("uvicorn", ""): r["failure_class"] for r in rows}
    assert by_version["0.13.4"] == "wrong-listener" and by_version["0.14.0"] == "wrong-listener"
    assert by_version["0.15.0"] == "passed"
    assert 3 <= len(rows) <= 4  # both ends + at most two middles, each version run once


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["uvicorn", "--good", "1", "--bad", "2", "--bad-signature", "x"],
            "--bad-signature needs --bad-class",
        ),
        (
            ["uvicorn", "--good", "1", "--bad", "2", "--bad-class", "leak", "--bad-signature", "("],
            "not a valid regex",
        ),
        (["reference", "--good", "1", "--bad", "2"], "has no released versions"),
        (["uvicorn", "--good", "1", "--bad", "2", "--python", "2.1"], "no Python 2.1"),
        (["uvicorn", "--good", "1", "--bad", "2", "--bind", "nope"], "bad bind"),
        (["uvicorn", "--good", "1", "--bad", "2", "--option", "=x"], "KEY=VALUE"),
    ],
)
def test_usage_errors_before_any_run(argv: List[str], message: str, tmp_path: "os.PathLike[str]") -> None:
    results = os.path.join(str(tmp_path), "r.jsonl")
    with pytest.raises(UsageError, match=message):
        run(_parse([*argv, "--results", results]), out=io.StringIO())
    assert not os.path.exists(results)


def test_recorded_env_errors_are_reused_unless_transient_or_cleared(tmp_path: "os.PathLike[str]") -> None:
    path = os.path.join(str(tmp_path), "r.jsonl")
    a = Scenario(server="uvicorn", requirements=("uvicorn==0.11.0",), python="3.11")
    b = Scenario(server="uvicorn", requirements=("uvicorn==0.11.1",), python="3.11")
    c = Scenario(server="uvicorn", requirements=("uvicorn==0.11.2",), python="3.11")

    def rec(sc: Scenario, cls: str, sig: str, version: str = "3.11.7") -> ResultRecord:
        return ResultRecord(
            scenario=sc.to_dict(), failure_class=cls, signature=sig, python={"version": version}
        )

    append_record(path, rec(a, "env-error", "Failed to build `httptools==0.0.13`: longintrepr.h"))
    append_record(path, rec(b, "env-error", "could not reach PyPI for uvicorn: timed out"))
    append_record(path, rec(c, "env-error", "Failed to build"))
    append_record(path, rec(c, "passed", ""))  # built later (e.g. --retry-env-errors): no longer failed
    append_record(path, rec(b, "env-error", "Failed to build", version="3.8.18"))
    assert set(recorded_env_errors(path, "3.11.7")) == {a.scenario_id}
    assert set(recorded_env_errors(path, "3.8.18")) == {b.scenario_id}
    assert recorded_env_errors(os.path.join(str(tmp_path), "missing.jsonl"), "3.11.7") == {}


@pytest.mark.slow
def test_real_dependency_bisect_keeps_the_other_pins(tmp_path: "os.PathLike[str]") -> None:
    """--dependency: uvicorn-worker 0.3.0 -> 0.4.0 under pinned gunicorn 23.0.0 + uvicorn 0.36.0."""
    results = os.path.join(str(tmp_path), "bisect.jsonl")
    argv = "gunicorn --requirement gunicorn==23.0.0 --requirement uvicorn==0.36.0 --dependency uvicorn-worker"
    argv += " --bad 0.3.0 --good 0.4.0 --python 3.11 --requests 40 --keepalive-requests 10"
    out = io.StringIO()
    assert run(_parse([*argv.split(), "--results", results]), out=out) == 0, out.getvalue()
    assert "first good (first fixed release): uvicorn-worker==0.4.0" in out.getvalue()
    with open(results, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    assert [(r["installed"]["gunicorn"], r["installed"]["uvicorn"]) for r in rows] == [
        ("23.0.0", "0.36.0")
    ] * 2
    assert "setup_event_loop" in rows[0]["signature"] and rows[1]["failure_class"] == "passed"


def test_registered_in_the_harness_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.main import main  # noqa: PLC0415 - the CLI module only for this test

    assert main(["bisect", "uvicorn", "--good", "1", "--bad", "2", "--bad-signature", "x"]) == 2
    assert "--bad-signature needs --bad-class" in capsys.readouterr().err
