"""Tests of harness/perf.py (the `degraded` judgement) and reports/perf.py (the performance section)."""

import dataclasses
import math
from typing import Any, Dict

from harness.model.records import ResultRecord
from harness.verdict.degraded import DEGRADED_RATIO, degradations, keepalive_p50, mark_degraded
from reports import render
from reports.merge import mark_degraded as report_mark_degraded
from reports.perf import bench_tables, performance
from reports.svg import line_plot
from tests.reports.test_reports import rec


def _ka(r: ResultRecord, p50: Any, by_worker: Any = None) -> ResultRecord:
    ka: Dict[str, Any] = {**r.load.get("keepalive", {}), "latency_ms": {"p50": p50, "p99": 50.0}}
    if by_worker is not None:
        ka["by_worker"] = by_worker
    return dataclasses.replace(r, load={**r.load, "keepalive": ka})


def _startup(r: ResultRecord, seconds: float) -> ResultRecord:
    return dataclasses.replace(r, timings={**r.timings, "all_workers": seconds})


def test_keepalive_p50_reads_only_finite_positive_numbers() -> None:
    r = rec("uvicorn", "0.54.0", "3.11", "linux")
    assert keepalive_p50(_ka(r, 3.5)) == 3.5
    for bad in ("3.5", None, True, math.nan, math.inf, 0, -1):
        assert keepalive_p50(_ka(r, bad)) is None
    assert keepalive_p50(dataclasses.replace(r, load={})) is None


def test_degraded_needs_a_passed_twin_with_the_same_version_platform_and_python() -> None:
    one = _ka(rec("uvicorn", "0.54.0", "3.11", "linux", workers=1), 2.0)
    slow = _ka(rec("uvicorn", "0.54.0", "3.11", "linux", workers=4), 2.0 * DEGRADED_RATIO)
    almost = _ka(rec("uvicorn", "0.54.0", "3.11", "linux", workers=2), 2.0 * DEGRADED_RATIO - 0.1)
    other_version = dataclasses.replace(slow, server_version="0.53.0")  # its twin is not 0.54.0's
    other_python = dataclasses.replace(slow, python={**slow.python, "version": "3.12.7"})
    failing = dataclasses.replace(slow, failure_class="request-errors")
    records = [one, slow, almost, other_version, other_python, failing]
    found = degradations(records)
    assert [d is not None for d in found] == [False, True, False, False, False, False]
    deg = found[1]
    assert deg is not None and deg.ratio == DEGRADED_RATIO and deg.twin_runs == 1
    assert deg.signature == "degraded: keep-alive p50 >= 10x the 1-worker twin"  # stable: runs compare equal
    assert "20.0 ms is 10x its single-worker twin's 2.0 ms" in deg.reason
    marked = mark_degraded(records)
    assert [r.failure_class for r in marked][:2] == ["passed", "degraded"]
    assert slow.failure_class == "passed"  # inputs untouched: records are frozen and append-only
    # the report decides it with the same function
    assert [r.failure_class for r in report_mark_degraded(records)] == [r.failure_class for r in marked]


def test_degraded_twin_is_the_mean_of_its_runs() -> None:
    ones = [
        _ka(rec("uvicorn", "0.54.0", "3.11", "linux", workers=1, run_id=f"r{i}"), p)
        for i, p in enumerate((1, 3))
    ]
    w2 = _ka(rec("uvicorn", "0.54.0", "3.11", "linux", workers=2), 20.0)
    deg = degradations([*ones, w2])[2]
    assert deg is not None and deg.twin_p50_ms == 2.0 and deg.twin_runs == 2


def test_performance_startup_medians_and_plots_per_server_and_start_method() -> None:
    recs = []
    for version, base in (("0.53.0", 0.1), ("0.54.0", 0.3)):
        for n in (1, 2, 4):
            for i, jitter in enumerate((0.0, 0.02, 0.5)):  # median ignores the outlier
                r = rec("uvicorn", version, "3.11", "linux", workers=n, run_id=f"{version}-{n}-{i}")
                recs.append(_startup(r, base * n + jitter))
    broken = _startup(rec("uvicorn", "0.54.0", "3.11", "linux", "startup-failure", workers=8), 9.0)
    perf = performance([*recs, broken])
    rows = {row["label"]: row["by_n"] for row in perf["startup"]}
    assert set(rows) == {"uvicorn@0.53.0 · Linux 3.11", "uvicorn@0.54.0 · Linux 3.11"}
    assert rows["uvicorn@0.54.0 · Linux 3.11"][4] == (1.22, 3)
    assert 8 not in perf["startup_ns"]  # a failing run's timing is not a startup figure
    assert len(perf["plots"]) == 1 and perf["plots"][0]["start_method"] == "default"
    plot = str(perf["plots"][0]["svg"])
    assert plot.count("<polyline") == 2 and "uvicorn@0.53.0" in plot


def test_performance_cells_fairness_and_per_worker_keepalive() -> None:
    one = _ka(rec("uvicorn", "0.54.0", "3.11", "linux", workers=1), 2.0)
    two = _ka(
        rec("uvicorn", "0.54.0", "3.11", "linux", workers=2),
        44.0,
        {"101": {"p50": 43.0}, "102": {"p50": 45.0}},
    )
    perf = performance([one, two])
    cell = next(c for c in perf["cells"] if c["row"].workers == 2)
    assert (cell["ka_worker_min"], cell["ka_worker_max"]) == (43.0, 45.0)
    assert cell["degraded"] is not None and round(cell["degraded"].ratio) == 22
    assert cell["max_share"] == two.load.get("max_share") and cell["jain"] == two.load.get("jain")
    assert perf["n_degraded"] == 1


def test_line_plot_escapes_labels_and_skips_garbage() -> None:
    svg = str(line_plot([("<script>x</script>", [(1, 0.1), (2, "nan"), (4, 0.3)])], title="t & <b>"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "t &amp; &lt;b&gt;" in svg
    assert svg.count("<circle") == 2
    assert str(line_plot([("empty", [(1, None)])], title="t")) == ""


def test_bench_tables_flatten_summaries_and_survive_odd_files() -> None:
    data = {
        "bench": "startup",
        "settings": {"rounds": 5},
        "figures": {"2": {"uvicorn": {"all_workers": {"median": 0.27, "min": 0.2, "max": 0.4, "n": 5}}}},
        "machine_before": {"cpus": 2},
    }
    tables = bench_tables([("startup.json", data), ("bad.json", [1, 2])])
    assert tables[0]["rows"][0]["name"] == "2 / uvicorn / all_workers"
    assert tables[0]["rows"][0]["median"] == 0.27 and tables[0]["settings"] == [("rounds", "5")]
    assert tables[1]["error"] == "not a JSON object"


def test_report_has_the_performance_section_and_escapes_bench_text() -> None:
    one = _startup(_ka(rec("reference", "", "3.11", "linux", workers=1, strategy="inherit"), 1.0), 0.1)
    four = _startup(_ka(rec("reference", "", "3.11", "linux", workers=4, strategy="inherit"), 1.5), 0.4)
    html = render([one, four], bench=[("x.json", {"bench": "<img src=x>", "figures": {"a": 1}})])
    assert 'id="performance"' in html and "Ready time vs workers" in html
    assert "<img src=x>" not in html and "&lt;img src=x&gt;" in html


def test_release_startup_changes_flag_a_slower_release() -> None:
    from reports import diff, render_release  # noqa: PLC0415
    from reports.release import startup_changes  # noqa: PLC0415

    prev = [_startup(rec("uvicorn", "0.53.0", "3.11", "linux", workers=n), 0.1 * n) for n in (1, 2)]
    cur = [
        _startup(rec("uvicorn", "0.54.0", "3.11", "linux", workers=1), 0.11),  # 1.1x: noise
        _startup(rec("uvicorn", "0.54.0", "3.11", "linux", workers=2), 0.6),  # 3x and +0.4 s: slower
    ]
    changes = startup_changes(diff(prev, cur))
    assert [(c.entry.label, round(c.ratio, 2), c.slower) for c in changes] == [
        ("uvicorn · default · w2", 3.0, True),
        ("uvicorn · default · w1", 1.1, False),
    ]
    page = render_release(diff(prev, cur), "uvicorn", "0.54.0", "0.53.0", records=[*prev, *cur])
    assert '<tr class="slower">' in page and "1 slower by" in page


def test_bench_tables_other_shapes_show_their_scalars() -> None:
    flaky = {"repeats": 10, "classes": {"passed": 35}, "exit_codes": [0, 0], "runs": {"x": 1}}
    (table,) = bench_tables([("flaky.json", flaky)])
    assert [(r["name"], r["value"]) for r in table["rows"]] == [("classes / passed", 35.0), ("repeats", 10.0)]
    html = render([], bench=[("flaky.json", flaky)])
    assert "Benchmark: flaky.json" in html and ">35<" in html


def test_cli_summary_judges_degraded_like_the_report() -> None:
    from harness.campaign.matrix import summary  # noqa: PLC0415

    one = _ka(rec("uvicorn", "0.54.0", "3.11", "linux", workers=1), 3.5)
    slow = _ka(rec("uvicorn", "0.54.0", "3.11", "linux", workers=2), 44.0)
    text = summary([one, slow])
    assert text.startswith("2 scenario(s): 1 passed, 1 degraded")
    assert "degraded: keep-alive p50 >= 10x the 1-worker twin" in text


def test_bench_startup_results_get_a_plot_per_contender() -> None:
    def fig(median: float) -> dict:
        return {"all_workers": {"median": median, "min": median, "max": median, "n": 5}}

    data = {
        "bench": "startup",
        "figures": {
            "1": {"uvicorn": fig(0.2), "reference spawn": fig(0.1), "only once": fig(0.3)},
            "8": {"uvicorn": fig(0.8), "reference spawn": fig(0.45)},
        },
    }
    (table,) = bench_tables([("startup.json", data)])
    plot = str(table["svg"])
    assert "uvicorn" in plot and "reference spawn" in plot
    assert "only once" not in plot  # a line needs two worker counts
    assert plot.count("<circle") == 4
    html = render([], bench=[("startup.json", data)])
    assert "bench startup: time until all N workers answered" in html
    # any other bench gets no plot
    (other,) = bench_tables([("throughput.json", {"bench": "throughput", "figures": {"8": {"x": fig(1)}}})])
    assert str(other["svg"]) == ""
