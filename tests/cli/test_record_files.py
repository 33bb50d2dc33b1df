"""Records and files under hostile conditions (issue #16 items 7, 8, 9): a FIFO, /dev/full, a full disk (a
real tmpfs), torn tails. A record is written whole or not at all, and the CLI says when it was not."""

import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
from typing import Any, Iterator, List

import pytest

from harness.model.records import RecordNotWritten, ResultRecord, append_record, read_records
from tests._paths import ROOT
from tests.reports.test_reports import rec

LIGHT = ["--workers", "1", "--requests", "5", "--keepalive-requests", "0"]


def _harness(args: List[str], cwd: str, timeout: float = 120) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "PYTHONPATH": ROOT}, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32", reason="mkfifo")
def test_a_fifo_is_refused_at_once(tmp_path: Any) -> None:
    fifo = str(tmp_path / "r.jsonl")
    os.mkfifo(fifo)
    for args in (["run", "--results", fifo], ["matrix", "--results", fifo], ["report", ROOT, "-o", fifo]):
        proc = _harness(args, str(tmp_path), timeout=30)  # blocked forever in the writability check before
        assert proc.returncode == 2 and "is not a regular file" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_dev_full_is_refused_before_the_run(tmp_path: Any) -> None:
    proc = _harness(["run", "--results", "/dev/full", *LIGHT], str(tmp_path))
    assert proc.returncode == 2 and "'/dev/full' is not a regular file" in proc.stderr
    assert not os.path.exists("/dev/capsules")
    proc = _harness(
        ["report", os.path.join(ROOT, "tests", "fixtures", "records"), "-o", "/dev/full"], str(tmp_path)
    )
    assert proc.returncode == 2 and "is not a regular file" in proc.stderr and "Traceback" not in proc.stderr


@contextlib.contextmanager
def _small_tmpfs(size: str) -> Iterator[str]:
    where = tempfile.mkdtemp(prefix="awh-tmpfs-")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where],
                             capture_output=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        os.rmdir(where)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], check=False)
        os.rmdir(where)


def _fill(where: str, leave: int) -> None:
    """Fill the filesystem until `leave` bytes (or less) are free."""
    with open(os.path.join(where, "ballast"), "wb") as fh:
        try:
            while os.statvfs(where).f_bavail * os.statvfs(where).f_frsize > leave:
                fh.write(b"x" * 1024)
                fh.flush()
        except OSError:
            pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a real tmpfs needs Linux and root")
def test_disk_full_leaves_no_torn_line_and_the_next_record_survives() -> None:
    big = dataclasses.replace(rec("uvicorn", "0.54.0", "3.11", "linux"), stderr_tail="e" * 6000)
    small = rec("reference", "0.1.0", "3.11", "linux", run_id="small")
    with _small_tmpfs("32k") as where:
        path = os.path.join(where, "r.jsonl")
        append_record(path, small)
        _fill(where, leave=4096)
        with pytest.raises(RecordNotWritten, match="No space left on device"):
            append_record(path, big)  # longer than what is left: a short write, taken back whole
        with open(path, "rb") as fh:
            raw = fh.read()
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1  # only the first record: nothing torn
        os.unlink(os.path.join(where, "ballast"))
        append_record(path, small)  # the next record lands on a line of its own
        assert [r.run_id for r in read_records([path])] == ["small", "small"]


def test_a_torn_tail_never_swallows_the_next_record(tmp_path: Any) -> None:
    path = str(tmp_path / "r.jsonl")
    r: ResultRecord = rec("reference", "0.1.0", "3.11", "linux", run_id="a")
    append_record(path, r)
    with open(path, "ab") as fh:
        fh.write(r.to_json().encode()[:50])  # a crash mid-line
    append_record(path, dataclasses.replace(r, run_id="b"))
    assert [x.run_id for x in read_records([path])] == ["a", "b"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a real tmpfs needs Linux and root")
def test_the_cli_says_when_the_record_was_not_written(tmp_path: Any) -> None:
    with _small_tmpfs("64k") as where:
        results = os.path.join(where, "r.jsonl")
        _fill(where, leave=1024)
        proc = _harness(
            ["run", "--results", results, "--capsule-dir", str(tmp_path / "c"), *LIGHT], str(tmp_path)
        )
        assert proc.stdout.startswith("passed")  # the verdict is printed ...
        assert proc.returncode == 1 and "record not written to" in proc.stderr  # ... and the loss said
        assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
        assert not os.path.exists(results) or os.path.getsize(results) == 0
