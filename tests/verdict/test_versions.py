"""harness.verdict.versions: what one run says about a known issue, and where that changes across releases."""

from harness.model.records import ResultRecord
from harness.verdict import versions as v

PAGE = {
    "expect": {"failure_class": "respawn-loop", "signature": r"startup failed", "exit_code": None},
    # uvicorn-2506's fix changed the failure: the fixed release exits instead of respawning
    "fixed_expect": {"failure_class": "startup-failure", "signature": r"startup failed"},
}


def _rec(failure_class: str, signature: str = "", exit_code: object = None) -> ResultRecord:
    return ResultRecord(scenario={}, failure_class=failure_class, signature=signature, exit_code=exit_code)  # type: ignore[arg-type]


def test_outcome() -> None:
    assert v.outcome(PAGE, _rec("respawn-loop", "Application startup failed. Exiting.")) == v.REPRODUCED
    assert v.outcome(PAGE, _rec("respawn-loop", "something else")) == v.OTHER
    assert v.outcome(PAGE, _rec("startup-failure", "Application startup failed. Exiting.")) == v.FIXED
    assert v.outcome(PAGE, _rec("startup-failure", "ImportError")) == v.OTHER
    assert v.outcome(PAGE, _rec("degraded")) == v.PASSED
    assert v.outcome(PAGE, _rec("env-error", "Failed to build")) == v.INCONCLUSIVE_OUTCOME
    exit_1 = {"expect": {"failure_class": "startup-failure", "signature": "", "exit_code": 1}}
    assert v.outcome(exit_1, _rec("startup-failure", exit_code=1)) == v.REPRODUCED
    assert v.outcome(exit_1, _rec("startup-failure", exit_code=0)) == v.OTHER


def test_boundaries() -> None:
    order = ["0.29.0", "0.30.0", "0.31.0", "0.49.0", "0.50.0", "0.51.0"]
    seen = {
        "0.29.0": v.FIXED,
        "0.30.0": v.REPRODUCED,
        "0.49.0": v.REPRODUCED,
        "0.50.0": v.OTHER,
        "0.51.0": v.FIXED,
    }
    assert v.boundaries(order, seen) == ("0.30.0", "0.51.0", "0.29.0")  # 0.31.0 not measured: left out
    assert v.boundaries(order, {"0.29.0": v.PASSED}) == ("", "", "")
    assert v.boundaries(order, {"0.51.0": v.REPRODUCED}) == ("0.51.0", "", "")
