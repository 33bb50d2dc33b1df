"""The known-issue catalog: `harness/catalog/known_issues/*.toml` (package data: an installed harness
has it too) loaded into typed, validated entries.

One file = one upstream issue, reproduced by a Scenario run against several requirement sets:

* affected - releases that show the bug: the run must end with the expected failure class, and the
  normalized decisive line must match the expected signature regex (and the exit code, when given)
* fixed - the first release without the bug: by default it must pass (a different class can be given
  when the fix changes the failure rather than removing it)
* unaffected - other releases that behave correctly (e.g. before a regression)

The format is documented in harness/catalog/known_issues/README.md. Errors are one line each and name the
file: `CatalogError: uvicorn-514.toml: [expect].failure_class 'boom' is not a failure class`.

* entries(directory=None) -> List[Entry] - every entry, sorted by id; raises CatalogError on the first bad one
* load_entry(path) -> Entry
* Entry.scenarios() -> [(Scenario, Expectation)] - what the collector turns into tests
* Entry.platform_skip(sys_platform) / Entry.python_skip(version) - "" or the reason to skip
* case_skip(entry, scenario, expectation, sys_platform, python) - "" or why one case is skipped here

Exceptions:

    ValueError
     └── CatalogError   a malformed entry (one line, names the file)
"""

import dataclasses
import fnmatch
import os
import re
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from harness.model.records import FAILURE_CLASSES, ResultRecord, Scenario

if sys.version_info >= (3, 11):
    import tomllib as _toml
else:  # pragma: no cover - exercised on 3.8-3.10
    import tomli as _toml  # type: ignore[import-not-found, unused-ignore]

#: the directory holding the catalog
DEFAULT_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "known_issues")

#: sys.platform values an entry may name
PLATFORMS = ("linux", "win32", "darwin")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
_PY_SPEC_RE = re.compile(r"^(>=|<=|==|!=|<|>)\s*(\d+(?:\.\d+)*)$")
_TOP_KEYS = {"id", "title", "links", "platforms", "python", "skip", "notes", "scenario", "expect"}
#: the page's own text (harness catalog pages) and the sweep's range (harness catalog sweep)
_TEXT_KEYS = ("symptom", "trigger", "mechanism", "fix")
_TOP_KEYS |= {*_TEXT_KEYS, "sweep", "sweep_from"}
_TOP_KEYS |= {"affected", "fixed", "unaffected"}
_EXPECT_KEYS = {"failure_class", "signature", "exit_code"}
_CASE_KEYS = _EXPECT_KEYS | {"requirements", "python", "note"}
_SCENARIO_FIELDS = {f.name for f in dataclasses.fields(Scenario)} - {"requirements"}


class CatalogError(ValueError):
    """A malformed catalog entry; str() is one line naming the file."""


@dataclasses.dataclass(frozen=True)
class Expectation:
    """What one run of an entry must show.

    * role - affected | fixed | unaffected
    * failure_class - one of FAILURE_CLASSES; "passed" (the entry's failure is absent) is met by
      "degraded" too: that run served from every worker, only slower on kept connections (a delayed-ACK
      stall, harness.verdict.degraded), which is not what any entry is about
    * signature - a regex searched in the record's signature ("" = not checked)
    * exit_code - the master's exit code (None = not checked)
    * note - why this case is there (free text)
    """

    role: str
    failure_class: str
    signature: str = ""
    exit_code: Optional[int] = None
    note: str = ""

    def mismatch(self, failure_class: str, signature: str, exit_code: Optional[int]) -> str:
        """ "" when a result meets this expectation, else one line saying what differs."""
        problems = []
        absent = self.failure_class == "passed" and failure_class == "degraded"
        if failure_class != self.failure_class and not absent:
            problems.append(f"class {failure_class!r} != expected {self.failure_class!r}")
        if self.signature and not absent and not re.search(self.signature, signature or ""):
            problems.append(f"signature {signature!r} does not match /{self.signature}/")
        if self.exit_code is not None and exit_code != self.exit_code:
            problems.append(f"exit code {exit_code!r} != expected {self.exit_code}")
        return "; ".join(problems)


@dataclasses.dataclass(frozen=True)
class Case:
    """One requirement set of an entry and its expectation."""

    requirements: Tuple[str, ...]
    expectation: Expectation
    python: str = ""

    @property
    def label(self) -> str:
        return f"{self.expectation.role}:{'+'.join(self.requirements)}"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One known upstream issue.

    * id - "uvicorn-514" (the file name without .toml)
    * title, links, notes - for people
    * platforms - sys.platform values where it reproduces (empty = everywhere)
    * python - ((op, "3.8"), ...) constraints on the server's Python; empty = any
    * skip - non-empty: never run here, and why (e.g. needs fault injection the runner lacks)
    * scenario - the Scenario template (requirements empty; each case fills them in)
    * cases - affected first, then fixed, then unaffected
    * symptom, trigger, mechanism, fix - the known-issue page's text: what the user sees, what makes it
      happen, why, and what fixed it (upstream links in `links`)
    * sweep / sweep_from - the distribution `harness catalog sweep` walks (default: the server) and the
      oldest release it starts from (default: the adapter's floor)
    """

    id: str
    title: str
    links: Tuple[str, ...]
    platforms: Tuple[str, ...]
    python: Tuple[Tuple[str, str], ...]
    scenario: Scenario
    cases: Tuple[Case, ...]
    skip: str = ""
    notes: str = ""
    path: str = ""
    symptom: str = ""
    trigger: str = ""
    mechanism: str = ""
    fix: str = ""
    sweep: str = ""
    sweep_from: str = ""

    def tag(self, role: str) -> Dict[str, str]:
        """What a record of one of this entry's cases carries (ResultRecord.catalog)."""
        return {"id": self.id, "role": role}

    def card(self) -> Dict[str, str]:
        """What the report's known-issue card shows of the entry: title, link, fixed_in, expect."""
        fixed = [c for c in self.cases if c.expectation.role == "fixed"]
        affected = [c for c in self.cases if c.expectation.role == "affected"]
        out = {"title": self.title, "url": self.links[0] if self.links else ""}
        if fixed and fixed[0].requirements:
            out["fixed_in"] = fixed[0].requirements[-1].replace("==", " ")
        if affected:
            out["expect"] = affected[0].expectation.failure_class
        return out

    @property
    def distribution(self) -> str:
        """The distribution whose releases the entry is about (the sweep walks them): `sweep`, else the
        server, canonical (lowercase, '-')."""
        return re.sub(r"[-_.]+", "-", (self.sweep or self.scenario.server).strip().lower())

    def page(self) -> Dict[str, Any]:
        """Everything the known-issue page and the report's card show of the entry, as plain data
        (reports.issues renders it; reports never import the catalog)."""
        sc = self.scenario
        derived = f"{sc.server} with {sc.workers} workers" + "".join(
            f", {label} {value}"
            for label, value, default in (
                ("bind", sc.bind, "tcp"),
                ("strategy", sc.strategy, ""),
                ("start method", sc.start_method, ""),
                ("app", sc.app, Scenario.app),
                ("fault", sc.fault, ""),
            )
            if value != default
        )
        fixed = [c for c in self.cases if c.expectation.role == "fixed"]
        pin = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*(\S+)\s*$")
        fixed_in = ""
        for req in fixed[0].requirements if fixed else ():
            m = pin.match(req)
            if m and re.sub(r"[-_.]+", "-", m.group(1).lower()) == self.distribution:
                fixed_in = m.group(2)
        affected = next(c.expectation for c in self.cases if c.expectation.role == "affected")
        fixed_expect = fixed[0].expectation if fixed else None
        return {
            "id": self.id,
            "title": self.title,
            "links": list(self.links),
            "platforms": list(self.platforms),
            "python": ",".join(f"{op}{v}" for op, v in self.python),
            "skip": self.skip,
            "symptom": self.symptom or self.title,
            "trigger": self.trigger or derived,
            "mechanism": self.mechanism,
            "fix": self.fix,
            "notes": self.notes.strip(),
            "distribution": self.distribution,
            "fixed_in": fixed_in,
            "expect": {
                "failure_class": affected.failure_class,
                "signature": affected.signature,
                "exit_code": affected.exit_code,
            },
            # what the fixed release does when the fix changed the failure rather than removing it
            "fixed_expect": {"failure_class": fixed_expect.failure_class, "signature": fixed_expect.signature}
            if fixed_expect is not None and fixed_expect.failure_class != "passed"
            else None,
            "scenario": sc.to_dict(),
            "cases": [
                {
                    "role": c.expectation.role,
                    "requirements": list(c.requirements),
                    "python": c.python or sc.python,
                    "failure_class": c.expectation.failure_class,
                    "signature": c.expectation.signature,
                    "note": c.expectation.note,
                }
                for c in self.cases
            ],
        }

    def scenarios(self) -> List[Tuple[Scenario, Expectation]]:
        """Each case as a runnable Scenario with its Expectation."""
        result = []
        for case in self.cases:
            scenario = dataclasses.replace(self.scenario, requirements=case.requirements)
            if case.python:
                scenario = dataclasses.replace(scenario, python=case.python)
            result.append((scenario, case.expectation))
        return result

    def platform_skip(self, sys_platform: str) -> str:
        """ "" when the entry reproduces on `sys_platform`, else the reason to skip."""
        if not self.platforms or sys_platform in self.platforms:
            return ""
        return f"{self.id} reproduces on {', '.join(self.platforms)} only; this is {sys_platform}"

    def python_skip(self, version: str) -> str:
        """ "" when `version` ("3.11.7") meets the entry's python constraints, else the reason."""
        if not self.python or not version:
            return ""
        have = _version_tuple(version)
        for op, bound in self.python:
            want = _version_tuple(bound)
            size = len(want)
            if not _compare(have[:size], op, want):
                spec = ",".join(f"{o}{b}" for o, b in self.python)
                return f"{self.id} needs Python {spec}; this is {version}"
        return ""


def case_skip(
    entry: Entry, scenario: Scenario, expectation: Expectation, sys_platform: str, python: str
) -> str:
    """ "" when this case of `entry` runs here, else the reason to skip it.

    * sys_platform - where it would run; python - the version the harness runs under ("3.11.7"),
      used when the scenario names no version of its own
    An entry's `skip` skips every case; a platform outside `platforms` too; the entry's python range
    applies to affected cases only (fixed/unaffected cases may deliberately sit outside it)."""
    if entry.skip:
        return f"{entry.id}: {entry.skip}"
    reason = entry.platform_skip(sys_platform)
    if reason or expectation.role != "affected":
        return reason
    own = scenario.python if scenario.python and scenario.python[0].isdigit() else ""
    return entry.python_skip(own or python)


def _version_tuple(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _compare(have: Tuple[int, ...], op: str, want: Tuple[int, ...]) -> bool:
    return {
        ">=": have >= want,
        "<=": have <= want,
        "==": have == want,
        "!=": have != want,
        "<": have < want,
        ">": have > want,
    }[op]


class _Reader:
    """Validation helpers that raise CatalogError prefixed with the file name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, message: str) -> CatalogError:
        return CatalogError(f"{self.name}: {message}")

    def table(self, data: Mapping[str, Any], key: str, where: str = "") -> Dict[str, Any]:
        value = data.get(key)
        if not isinstance(value, dict):
            raise self.fail(f"{where}[{key}] must be a table")
        return value

    def string(self, data: Mapping[str, Any], key: str, where: str, required: bool = True) -> str:
        if key not in data:
            if required:
                raise self.fail(f"{where}{key} is required")
            return ""
        value = data[key]
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.fail(f"{where}{key} must be a non-empty string")
        return value

    def strings(
        self, data: Mapping[str, Any], key: str, where: str, required: bool = False
    ) -> Tuple[str, ...]:
        if key not in data:
            if required:
                raise self.fail(f"{where}{key} is required")
            return ()
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(f"{where}{key} must be a list of non-empty strings")
        if required and not value:
            raise self.fail(f"{where}{key} must not be empty")
        return tuple(value)

    def unknown(self, data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
        extra = sorted(set(data) - set(allowed))
        if extra:
            raise self.fail(f"{where}unknown key {extra[0]!r}")

    def expectation(
        self, data: Mapping[str, Any], where: str, role: str, default: Optional[Expectation]
    ) -> Expectation:
        base = default or Expectation(role=role, failure_class="passed")
        failure_class = data.get("failure_class", base.failure_class)
        if failure_class not in FAILURE_CLASSES:
            raise self.fail(f"{where}failure_class {failure_class!r} is not a failure class")
        signature = data.get("signature", base.signature)
        if not isinstance(signature, str):
            raise self.fail(f"{where}signature must be a string (a regex)")
        try:
            re.compile(signature)
        except re.error as exc:
            raise self.fail(f"{where}signature is not a valid regex: {exc}") from exc
        exit_code = data.get("exit_code", base.exit_code)
        if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)):
            raise self.fail(f"{where}exit_code must be an integer")
        note = data.get("note", "")
        if not isinstance(note, str):
            raise self.fail(f"{where}note must be a string")
        return Expectation(role, failure_class, signature, exit_code, note)

    def case(self, data: Any, where: str, role: str, default: Optional[Expectation]) -> Case:
        if not isinstance(data, dict):
            raise self.fail(f"{where} must be a table")
        self.unknown(data, sorted(_CASE_KEYS), where + ".")
        requirements = self.strings(data, "requirements", where + ".", required=True)
        python = self.string(data, "python", where + ".", required=False)
        return Case(requirements, self.expectation(data, where + ".", role, default), python)


def parse_entry(data: Mapping[str, Any], name: str) -> Entry:
    """Validate one decoded TOML document; `name` is the file name used in errors and as the id."""
    r = _Reader(name)
    r.unknown(data, sorted(_TOP_KEYS), "")
    entry_id = r.string(data, "id", "")
    stem = os.path.splitext(os.path.basename(name))[0]
    if not _ID_RE.match(entry_id):
        raise r.fail(f"id {entry_id!r} must be lowercase letters, digits, '.' and '-'")
    if stem != entry_id and name.endswith(".toml"):
        raise r.fail(f"id {entry_id!r} does not match the file name {stem!r}")
    title = r.string(data, "title", "")
    links = r.strings(data, "links", "", required=True)
    for link in links:
        if not link.startswith("https://"):
            raise r.fail(f"links: {link!r} is not an https URL")
    platforms = r.strings(data, "platforms", "")
    for plat in platforms:
        if plat not in PLATFORMS:
            raise r.fail(f"platforms: {plat!r} is not one of {', '.join(PLATFORMS)}")
    python: List[Tuple[str, str]] = []
    spec = r.string(data, "python", "", required=False)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = _PY_SPEC_RE.match(part)
        if match is None:
            raise r.fail(f"python {spec!r}: {part!r} is not like '>=3.8'")
        python.append((match.group(1), match.group(2)))
    skip = r.string(data, "skip", "", required=False)
    notes = r.string(data, "notes", "", required=False)
    text = {key: r.string(data, key, "", required=False).strip() for key in _TEXT_KEYS}
    sweep = r.string(data, "sweep", "", required=False).strip()
    sweep_from = r.string(data, "sweep_from", "", required=False).strip()
    if sweep_from and not re.match(r"^\d+(\.\d+)*([a-z]+\d*)?$", sweep_from):
        raise r.fail(f"sweep_from {sweep_from!r} is not a release version")

    scenario_data = r.table(data, "scenario")
    r.unknown(scenario_data, sorted(_SCENARIO_FIELDS), "[scenario].")
    if "server" not in scenario_data:
        raise r.fail("[scenario].server is required")
    try:
        scenario = Scenario(**scenario_data)
    except (TypeError, ValueError) as exc:
        raise r.fail(f"[scenario] is not a valid Scenario: {exc}") from exc
    for key, kind in (("workers", int), ("server", str), ("bind", str), ("app", str)):
        if not isinstance(getattr(scenario, key), kind):
            raise r.fail(f"[scenario].{key} must be a {kind.__name__}")

    expect_data = r.table(data, "expect")
    r.unknown(expect_data, sorted(_EXPECT_KEYS), "[expect].")
    if "failure_class" not in expect_data:
        raise r.fail("[expect].failure_class is required")
    expect = r.expectation(expect_data, "[expect].", "affected", None)
    if expect.failure_class == "passed":
        raise r.fail("[expect].failure_class must be a failure, not 'passed'")

    affected = data.get("affected")
    if not isinstance(affected, list) or not affected:
        raise r.fail("[[affected]] needs at least one requirement set")
    cases = [r.case(c, f"[[affected]] #{i + 1}", "affected", expect) for i, c in enumerate(affected)]
    if "fixed" in data:
        cases.append(r.case(data["fixed"], "[fixed]", "fixed", None))
    unaffected = data.get("unaffected", [])
    if not isinstance(unaffected, list):
        raise r.fail("[[unaffected]] must be an array of tables")
    cases += [r.case(c, f"[[unaffected]] #{i + 1}", "unaffected", None) for i, c in enumerate(unaffected)]
    seen = set()
    for case in cases:
        identity = (case.requirements, case.python)
        if identity in seen:
            raise r.fail(f"requirement set {'+'.join(case.requirements)} appears twice")
        seen.add(identity)
    return Entry(
        id=entry_id,
        title=title,
        links=links,
        platforms=platforms,
        python=tuple(python),
        scenario=scenario,
        cases=tuple(cases),
        skip=skip,
        notes=notes,
        path=name,
        sweep=sweep,
        sweep_from=sweep_from,
        **text,
    )


def load_entry(path: str) -> Entry:
    """Read and validate one .toml file."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            data = _toml.load(fh)
    except _toml.TOMLDecodeError as exc:
        raise CatalogError(f"{name}: not valid TOML: {str(exc).splitlines()[0]}") from exc
    except OSError as exc:
        raise CatalogError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    entry = parse_entry(data, name)
    return dataclasses.replace(entry, path=path)


def entries(directory: Optional[str] = None) -> List[Entry]:
    """Every entry of the catalog in `directory` (default: the packaged one, DEFAULT_DIRECTORY), by id."""
    folder = directory or DEFAULT_DIRECTORY
    found = [load_entry(os.path.join(folder, n)) for n in sorted(os.listdir(folder)) if n.endswith(".toml")]
    return sorted(found, key=lambda e: e.id)


def last_verdicts(records: Iterable[ResultRecord]) -> Dict[str, Dict[str, ResultRecord]]:
    """The last record of every (scenario id, sys_platform), in the order given (file order)."""
    out: Dict[str, Dict[str, ResultRecord]] = {}
    for record in records:
        plat = str(record.platform.get("sys_platform", "") or "?")
        out.setdefault(record.scenario_id, {})[plat] = record
    return out


def select(all_entries: Sequence[Entry], patterns: Sequence[str]) -> List[Entry]:
    """Entries whose id matches one of `patterns` (exact or fnmatch); all when none. ValueError names
    a pattern that matches nothing."""
    if not patterns:
        return list(all_entries)
    chosen: List[Entry] = []
    for pattern in patterns:
        hits = [e for e in all_entries if e.id == pattern or fnmatch.fnmatchcase(e.id, pattern)]
        if not hits:
            known = ", ".join(e.id for e in all_entries)
            raise ValueError(f"no catalog entry matches {pattern!r}; known: {known}")
        chosen.extend(e for e in hits if e not in chosen)
    return sorted(chosen, key=lambda e: e.id)


def cards(directory: Optional[str] = None) -> Dict[str, Dict[str, str]]:
    """{entry id: Entry.card()} of the catalog, for the report's known-issue cards ({} when it cannot be
    read: a report never fails for the catalog)."""
    try:
        return {entry.id: entry.card() for entry in entries(directory)}
    except (CatalogError, OSError):
        return {}


def pages(directory: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
    """{entry id: Entry.page()} of the catalog, for the report's known-issue cards and pages ({} when it
    cannot be read: a report never fails for the catalog)."""
    try:
        return {entry.id: entry.page() for entry in entries(directory)}
    except (CatalogError, OSError):
        return {}


__all__ = [
    "DEFAULT_DIRECTORY",
    "PLATFORMS",
    "Case",
    "CatalogError",
    "Entry",
    "Expectation",
    "cards",
    "case_skip",
    "entries",
    "last_verdicts",
    "load_entry",
    "pages",
    "parse_entry",
    "select",
]
