"""The installer's decisive line: the one line of uv's or pip's output that says why an env build failed.

It becomes the env-error record's signature (through the classifier), so it must name the failure and
nothing of this machine (no paths, no timings): uv's `error:` block with its first cause (or the compiler
error of a failed build), pip's `ERROR:` lines, a compiler error, an exception line, then the last line.

* decisive_line(output) -> str - "" when the output is empty
"""

import re
from typing import List

#: the longest line kept; longer ones are cut with "..."
_MAX_LINE = 400

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_COMPILER_ERROR = re.compile(
    r"(\S+:\d+(?::\d+)?: (?:fatal )?error: .+|error: command .+ failed.*|fatal error: .+)"
)
_EXCEPTION = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_LINE else text[: _MAX_LINE - 3] + "..."


def _first_sentence(text: str) -> str:
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(text.split()), maxsplit=1)
    return parts[0]


def _build_detail(lines: List[str]) -> str:
    for line in lines:
        m = _COMPILER_ERROR.search(line)
        if m and not line.strip().startswith("$"):
            return m.group(1).strip()
    for line in reversed(lines):
        m = _EXCEPTION.match(line)
        if m:
            return f"{m.group(1)}: {m.group(2)}"
    return ""


def decisive_line(output: str) -> str:
    """The one line of an installer's output that says why it failed ("" when nothing stands out).

    Rules, most specific first: uv's `error:` block (with its first cause, or the compiler error of a
    failed build), pip's `ERROR:` lines (Requires-Python mismatches, missing versions, failed wheels),
    a compiler error, an exception line, then the last non-empty line."""
    lines = [_ANSI.sub("", line).rstrip() for line in output.splitlines()]
    lines = [line for line in lines if line.strip() and not line.startswith("$ ")]
    if not lines:
        return ""

    # uv: "error: <header>" then "  cause: ..." lines (continuations indented deeper).
    for i, line in enumerate(lines):
        if line.startswith("error: "):
            header = line[len("error: ") :].strip().rstrip(":")
            causes: List[str] = []
            for follow in lines[i + 1 :]:
                stripped = follow.strip()
                if stripped.startswith("cause: "):
                    causes.append(stripped[len("cause: ") :])
                elif causes and follow.startswith("         ") and not stripped.startswith("["):
                    if len(causes) == 1 and not header.startswith("Failed to build"):
                        causes[-1] += " " + stripped
                elif stripped.startswith(("hint:", "help:")):
                    break
            if header.startswith(("Failed to build", "Failed to download and build")):
                detail = _build_detail(lines[i + 1 :]) or (causes[-1] if causes else "")
                return _one_line(f"{header}: {detail}" if detail else header)
            if causes:
                return _one_line(f"{header}: {_first_sentence(causes[0])}")
            return _one_line(header)

    # pip
    errors = [line.strip()[len("ERROR: ") :] for line in lines if line.strip().startswith("ERROR: ")]
    errors = [e for e in errors if not e.startswith("pip's dependency resolver")]
    ignored = [line for line in lines if "require a different python version" in line]
    for err in errors:
        if "requires a different Python" in err:
            return _one_line(err)
    for err in errors:
        if err.startswith("Could not find a version that satisfies the requirement"):
            base = re.sub(r"\s*\(from versions:.*\)\s*$", "", err)
            # pip hides "needs another Python" in an "Ignored the following versions" line: keep the
            # fragment for the version asked for, if it is there.
            m = re.search(r"===?\s*([\w.!+-]+)", base)
            wanted = re.escape(m.group(1)) + " Requires-Python " if m else None
            for line in ignored:
                frag = re.search("(?:^|[:;]\\s*)(" + wanted + "[^;]+)", line) if wanted else None
                if frag:
                    return _one_line(f"{base} ({frag.group(1).strip()})")
            return _one_line(base)
    for err in errors:
        if err.startswith(("Failed building wheel", "Failed to build")):
            detail = _build_detail(lines)
            return _one_line(f"{err}: {detail}" if detail else err)
    for err in errors:
        if err.startswith("Cannot install") or "ResolutionImpossible" in err:
            return _one_line(err)
    if errors:
        return _one_line(errors[0])

    detail = _build_detail(lines)
    if detail:
        return _one_line(detail)
    return _one_line(lines[-1])


__all__ = ["decisive_line"]
