"""Scenario and ResultRecord: the plain, frozen data that crosses processes, xdist and JSONL files.

Nothing in here holds a socket, a Popen or a psutil handle. `to_dict()` gives JSON-able dicts,
`from_dict()` reads them back (unknown keys are ignored so that old readers survive new fields).

Failure classes come from harness.model.classes (re-exported here as FAILURE_CLASSES).
"""

import dataclasses
import hashlib
import json
import os
import re
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from harness.model.classes import FAILURE_CLASSES

SCHEMA_VERSION = 1


def _frozen_tuple(value: Any) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One point of the matrix: what to run and how to drive it.

    * server - reference | uvicorn | hypercorn | gunicorn | granian | daphne
    * requirements - exact requirement strings for the server's env ("uvicorn==0.30.0", extras, extra pins);
      empty: the server's latest that installs (reference: the project itself)
    * python - interpreter the *server* runs under: "" (the harness's own), "3.10", or a path
    * workers - N worker processes
    * strategy / start_method - reference server: socket strategy and start method ("" = its default);
      upstream servers: start_method emulates a multiprocessing default through a launcher
    * app - MODULE:ATTR of the ASGI app
    * bind - "tcp" (port 0), "uds" (a fresh path) or "fd:N" (the harness binds and passes fd N)
    * stdin - inherit | devnull | closed
    * stop - group (SIGTERM to the process group) | master (SIGTERM to the master only)
    * requests / concurrency - the fresh-connection load; keepalive_requests - the keep-alive phase
    * fault - a fault injected while load runs ("" = none; `signal-master:HUP`, `kill-workers:2` take an
      argument: harness.run.faults); fault_repeat / fault_interval - how often a signal fault is sent and
      the seconds between two sends
    * options - extra adapter options as (key, value) pairs
    * server_args - arguments appended verbatim to the server's command line, after the adapter's own
      (an argv list, never a shell string)
    """

    server: str = "reference"
    requirements: Tuple[str, ...] = ()
    python: str = ""
    workers: int = 2
    strategy: str = ""
    start_method: str = ""
    app: str = "servers.apps:pid"
    bind: str = "tcp"
    stdin: str = "devnull"
    stop: str = "group"
    requests: int = 200
    concurrency: int = 16
    keepalive_requests: int = 50
    fault: str = ""
    options: Tuple[Tuple[str, str], ...] = ()
    server_args: Tuple[str, ...] = ()
    fault_repeat: int = 1
    fault_interval: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "requirements", _frozen_tuple(self.requirements))
        object.__setattr__(self, "server_args", _frozen_tuple(self.server_args))
        object.__setattr__(self, "options", tuple((str(k), str(v)) for k, v in (self.options or ())))

    @property
    def scenario_id(self) -> str:
        """A stable, readable id: the same scenario gets the same id on every machine."""
        parts = [self.server]
        if self.requirements:
            parts.append("+".join(self.requirements))
        if self.strategy:
            parts.append(self.strategy)
        if self.start_method:
            parts.append(self.start_method)
        parts.append(f"w{self.workers}")
        if self.bind != "tcp":
            parts.append(self.bind)
        if self.app != Scenario.app:
            parts.append(self.app)
        if self.fault:
            parts.append(f"fault={self.fault}")
            if self.fault_repeat != 1:
                parts.append(f"x{self.fault_repeat}")
            if self.fault_interval != 1.0:
                parts.append(f"every{self.fault_interval:g}s")
        if self.stop != "group":
            parts.append(f"stop={self.stop}")
        if self.stdin != "devnull":
            parts.append(f"stdin={self.stdin}")
        if self.python:
            parts.append(f"py{self.python}")
        if self.options:
            parts.append(",".join(f"{k}={v}" for k, v in self.options))
        if self.server_args:
            parts.append("args=" + ",".join(self.server_args))
        return "-".join(p.replace(" ", "") for p in parts)

    def harness_argv(self) -> List[str]:
        """`harness run ...` for this scenario: every field that differs from the default, as the CLI's
        flags (the command a report or a known-issue page gives to run it again with the harness)."""
        d = Scenario()
        argv = ["harness", "run", "--server", self.server]
        for req in self.requirements:
            argv += ["--requirement", req]
        flags = [
            ("--python", self.python, d.python), ("--workers", self.workers, d.workers),
            ("--strategy", self.strategy, d.strategy), ("--start-method", self.start_method, d.start_method),
            ("--app", self.app, d.app), ("--bind", self.bind, d.bind), ("--stdin", self.stdin, d.stdin),
            ("--stop", self.stop, d.stop), ("--requests", self.requests, d.requests),
            ("--concurrency", self.concurrency, d.concurrency),
            ("--keepalive-requests", self.keepalive_requests, d.keepalive_requests),
            ("--fault", self.fault, d.fault), ("--fault-repeat", self.fault_repeat, d.fault_repeat),
            ("--fault-interval", self.fault_interval, d.fault_interval),
        ]  # fmt: skip
        for flag, value, default in flags:
            if value != default:
                argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        argv += [f"--option={k}={v}" for k, v in self.options]
        argv += [f"--server-arg={a}" for a in self.server_args]
        return argv

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["requirements"] = list(self.requirements)
        d["options"] = [list(kv) for kv in self.options]
        d["server_args"] = list(self.server_args)
        return d

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Scenario":
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "options" in kwargs:
            kwargs["options"] = tuple(tuple(kv) for kv in kwargs["options"])
        return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class ResultRecord:
    """The outcome of one scenario run. Plain JSON; appended one per line to a JSONL file.

    * scenario - the Scenario, as a dict
    * failure_class - one of FAILURE_CLASSES; signature - the normalized decisive line ("" when passed)
    * reason - one human sentence saying why this class was chosen
    * exit_code / exit_name - the server master's exit code and (reference server) its name
    * platform - {system, release, machine, sys_platform}
    * python - {requested, executable, version, implementation}
    * installed - {distribution: version} read back from the env: every package in it (an env has no seed
      packages: harness.env.venvs); builder - what built the env ("uv 0.9.5", "pip 24.0");
      server_version - the server's version
    * timings - seconds since launch: {first_response, all_workers, load_done, stop_sent, stopped,
      worker_ready: {pid: s}, ready_event: s, readiness_gave_up: {t, why} (upstream: the readiness wait
      ended before its deadline - no worker alive and the master idle for
      harness.run.serverwatch.NO_WORKER_GRACE_S, or
      RESPAWN_GIVE_UP_FACTOR x N workers died)}
    * load - {requests, ok, errors: {class: n}, status: {code: n}, per_worker: {pid: n}, max_share, jain,
      latency_ms: {p50, p90, p99, max}, rate,
      keepalive: {requests, ok, per_worker, latency_ms: {...}, by_worker: {pid: {p50, p99}}}}
    * snapshots - [{phase, processes: [{pid, ppid, name, cmdline, role}],
      listeners: [{pid, family, address, port, path}]}]
    * leaks - {processes: [...], listeners: [...], uds: [...]}
    * worker_pids - pids that answered requests
    * events - the reference server's events (or []), fault - what the fault did
    * command - argv of the server; cwd; env - the environment variables the harness set
    * stderr_tail / stdout_tail - the end of the server's output (untrusted text)
    * capsule - path of the reproduction folder, or ""
    * catalog - {"id", "role"} when the run is a case of a known-issue catalog entry (harness.catalog): the
      entry's id and its case (affected | fixed | unaffected); {} otherwise. The entry's title, links and
      fixed-in version are read from the catalog by id, never carried in the record
    * attempt - {"group", "index", "purpose"} when the run is one of several runs of its scenario by one
      invocation (harness.verdict.agreement): purpose "confirm" (a failing verdict re-run before it is
      called) or "repeat" (--repeat N, a failure rate); index counts from 1; {} for a lone run
    """

    scenario: Dict[str, Any]
    failure_class: str
    signature: str = ""
    reason: str = ""
    exit_code: Optional[int] = None
    exit_name: str = ""
    platform: Dict[str, Any] = dataclasses.field(default_factory=dict)
    python: Dict[str, Any] = dataclasses.field(default_factory=dict)
    installed: Dict[str, str] = dataclasses.field(default_factory=dict)
    builder: str = ""
    server_version: str = ""
    timings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    load: Dict[str, Any] = dataclasses.field(default_factory=dict)
    snapshots: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    leaks: Dict[str, Any] = dataclasses.field(default_factory=dict)
    worker_pids: List[int] = dataclasses.field(default_factory=list)
    events: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    fault: Dict[str, Any] = dataclasses.field(default_factory=dict)
    command: List[str] = dataclasses.field(default_factory=list)
    env: Dict[str, str] = dataclasses.field(default_factory=dict)
    stderr_tail: str = ""
    stdout_tail: str = ""
    capsule: str = ""
    catalog: Dict[str, str] = dataclasses.field(default_factory=dict)
    attempt: Dict[str, Any] = dataclasses.field(default_factory=dict)
    started_at: str = ""
    duration_s: float = 0.0
    run_id: str = ""
    harness_version: str = ""
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # a class this harness does not know is allowed when read back (a newer harness wrote it); the
        # classifier only ever produces FAILURE_CLASSES
        if not isinstance(self.failure_class, str) or not self.failure_class:
            raise ValueError(f"bad failure class {self.failure_class!r}")

    @property
    def scenario_obj(self) -> Scenario:
        return Scenario.from_dict(self.scenario)

    @property
    def scenario_id(self) -> str:
        return self.scenario_obj.scenario_id

    @property
    def key(self) -> str:
        """Identity of a cell across runs and machines: scenario + platform + python version."""
        py = str(self.python.get("version", ""))
        plat = str(self.platform.get("sys_platform", ""))
        raw = f"{self.scenario_id}|{plat}|{py}"
        return hashlib.sha1(raw.encode()).hexdigest()[:16]

    @property
    def output(self) -> str:
        """The server's output as the classifier read it: stderr, then stdout (some servers log there)."""
        return "\n".join(t for t in (self.stderr_tail, self.stdout_tail) if t)

    @property
    def verdict(self) -> str:
        """The one-line verdict the CLI prints: `<failure-class> <signature>`."""
        return f"{self.failure_class} {self.signature}".rstrip()

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ResultRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class RecordNotWritten(OSError):
    """append_record could not write the record whole (disk full, a read-only or vanished file); str() is
    one line. Nothing of it is left in the file when it was the last writer (else a newline ends the
    fragment, so the next record starts on a line of its own)."""


def _ends_with_newline(fd: int, size: int) -> bool:
    if size == 0:
        return True
    os.lseek(fd, size - 1, os.SEEK_SET)
    return os.read(fd, 1) == b"\n"


def append_record(path: str, record: ResultRecord) -> None:
    """Append one record as one line and flush it to disk; RecordNotWritten when it could not be.

    One `write()` of one line on a file opened with O_APPEND: safe for several xdist workers appending
    to the same file (each line lands whole). A file whose last line is torn (a crash, a full disk) gets a
    newline first, so that fragment never swallows this record. A short or failed write is undone: the file
    is cut back to its size before the write when nothing was appended after it, else the fragment is
    ended with a newline (a reader skips it and says so)."""
    line = (record.to_json() + "\n").encode("utf-8")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RecordNotWritten(f"record not written to {path}: {exc.strerror or exc}") from None
    try:
        start = os.fstat(fd).st_size
        data = line if _ends_with_newline(fd, start) else b"\n" + line
        written = 0
        try:
            while written < len(data):
                n = os.write(fd, data[written:])
                if n <= 0:
                    raise OSError(28, "No space left on device")
                written += n
            os.fsync(fd)
        except OSError as exc:
            _undo(fd, start, written)
            raise RecordNotWritten(f"record not written to {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _undo(fd: int, start: int, written: int) -> None:
    try:
        if os.fstat(fd).st_size == start + written:
            os.ftruncate(fd, start)  # ours is the last write: take it back whole
        elif written:
            os.write(fd, b"\n")  # someone appended after us: end our fragment (best effort)
    except OSError:
        pass


def iter_json_objects(path: str) -> Iterator[Dict[str, Any]]:
    """The JSON objects of a JSON-lines file, in order; blank lines, a torn last line (a crash or a writer
    mid-line) and non-object lines are skipped, not fatal. Undecodable bytes are replaced."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            line = raw.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                yield data


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A line of a results file that is not (all of) a record: where, and why. `repaired` - the record
    was kept, with the named fields reset to their defaults."""

    path: str
    line: int
    reason: str
    repaired: bool = False

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


_CLASS_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


def _scenario_type(f: "dataclasses.Field[Any]") -> Tuple[type, ...]:
    if isinstance(f.default, str):
        return (str,)
    if isinstance(f.default, float):
        return (int, float)
    if isinstance(f.default, int):
        return (int,)
    return (list, tuple)


_SCENARIO_TYPES: Dict[str, Tuple[type, ...]] = {
    f.name: _scenario_type(f) for f in dataclasses.fields(Scenario)
}


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_scenario(data: Any) -> str:
    """ "" when `data` can be a Scenario, else why not."""
    if not isinstance(data, dict):
        return f"scenario is {_type_name(data)}, not an object"
    for key, want in _SCENARIO_TYPES.items():
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, want):
            return f"scenario.{key} is {_type_name(value)}"
    for key in ("requirements", "server_args"):
        for item in data.get(key) or ():
            if not isinstance(item, str):
                return f"scenario.{key} holds a non-string"
    for pair in data.get("options") or ():
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            return "scenario.options holds something that is not a [key, value] pair"
    return ""


def _field_default(f: "dataclasses.Field[Any]") -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


def _fits(value: Any, default: Any, name: str) -> bool:
    if name == "exit_code":
        return value is None or (isinstance(value, int) and not isinstance(value, bool))
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def record_from_line(data: Any) -> Tuple[Optional["ResultRecord"], str, List[str]]:
    """(record or None, why it is not one, fields reset): a JSON object read from a results file made into
    a ResultRecord if it can be. A wrong scenario or failure class skips it; another field of the wrong
    type is reset to its default (the rest is still worth showing) and named in the third item. A class
    this harness does not know (a newer harness's) is kept: it is shown, not fatal."""
    if not isinstance(data, dict):
        return None, f"a JSON {_type_name(data)}, not a record", []
    if "failure_class" not in data:
        return None, "no failure_class: not a record", []
    cls = data.get("failure_class")
    if not isinstance(cls, str) or not _CLASS_NAME.match(cls):
        return None, f"failure_class is not a class name: {str(cls)[:40]!r}", []
    why = _check_scenario(data.get("scenario", {}))
    if why:
        return None, why, []
    fields = {f.name: f for f in dataclasses.fields(ResultRecord)}
    clean: Dict[str, Any] = {}
    reset: List[str] = []
    for key, value in data.items():
        f = fields.get(key)
        if f is None or key in ("scenario", "failure_class"):
            continue
        default = _field_default(f)
        if _fits(value, default, key):
            clean[key] = value
        else:
            reset.append(key)
    try:
        record = ResultRecord(scenario=dict(data.get("scenario") or {}), failure_class=cls, **clean)
        record.scenario_id  # noqa: B018 - proves the scenario builds
    except (TypeError, ValueError) as exc:
        return None, f"not a record: {exc}", []
    return record, "", reset


def load_records(paths: Iterable[str]) -> Tuple[List["ResultRecord"], List[Skipped]]:
    """Every record of the JSONL files, and every line that was not one (or only partly) with the reason:
    blank lines are nothing; a torn line (a crash mid-write), garbage, a non-record object, a wrong type
    are listed, never fatal. Undecodable bytes are replaced."""
    records: List[ResultRecord] = []
    skipped: List[Skipped] = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for n, raw in enumerate(fh, start=1):
                line = raw.strip()
                if not line:
                    continue
                try:
                    data = json.loads(line)
                except (ValueError, RecursionError):
                    skipped.append(Skipped(path, n, "not JSON (a torn or garbled line)"))
                    continue
                record, why, reset = record_from_line(data)
                if record is None:
                    skipped.append(Skipped(path, n, why))
                    continue
                if reset:
                    skipped.append(Skipped(path, n, "wrong type, shown without: " + ", ".join(reset), True))
                records.append(record)
    return records, skipped


def read_records(paths: Iterable[str]) -> Iterator[ResultRecord]:
    """The records of JSONL files (load_records without the list of what was skipped)."""
    yield from load_records(paths)[0]


__all__ = [
    "FAILURE_CLASSES",
    "SCHEMA_VERSION",
    "RecordNotWritten",
    "ResultRecord",
    "Scenario",
    "Skipped",
    "append_record",
    "iter_json_objects",
    "load_records",
    "read_records",
    "record_from_line",
]
