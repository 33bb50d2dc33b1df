"""Reproduction capsules: a folder per non-passing record that reproduces the failure without the harness.

write_capsule(record, dest_dir, *, project_root) -> path of the folder it wrote, `dest_dir/<scenario>-<key>`:

* README.md - what failed (verdict, reason, signature), platform, python, installed versions, the exact
  command, the decisive output, and how to run the reproduction
* requirements.txt - exact pins (`name==version`) of the server's env (record.installed; the scenario's
  requirements when nothing was read back)
* command.txt - the exact argv, one shell-quoted line (POSIX) and one line for a .bat file (Windows:
  MS-quoted arguments, every cmd.exe metacharacter caret-escaped, % doubled: cmd_line)
* run.sh / run.bat - run that command with the recorded environment, from the capsule folder
* env.json - the environment variables the harness set for the server
* servers/ - a copy of the project's `servers` package (the reference server and the test apps that
  the command names), so that `servers.apps:pid` imports without the project
* capsule.json - what repro.py reproduces: the tokenized command and env, the target, deadline, workers and
  the recorded verdict
* repro.py - harness/capsule/repro.py as it is, standalone (stdlib only, Python 3.7+): starts the command
  in its own process group, probes it on loopback with fresh connections until N distinct
  `x-worker-pid` values answered or a deadline, prints what it saw and the verdict, then stops and kills
  the whole tree. Exit status 0 when the server passed, 1 when it failed (so `git bisect run python repro.py`
  works), 2 when it could not run.

Paths of the original run (the project root, temp dirs for UDS paths / event files / HOME) are
re-made at reproduction time: the project root becomes the capsule folder; an absolute path whose
directory no longer exists is moved into a fresh temp dir; a TCP port that is 0 or busy is replaced by a
free one. repro.py prints every such substitution.
"""

import json
import os
import re
import shlex
import shutil
from typing import Any, Dict, List, Optional

from harness.model.records import ResultRecord
from harness.model.text import clean_text, longest_run, one_line

#: what repro.py calls the project root inside argv and env values (replaced by the capsule folder)
ROOT_TOKEN = "{capsule}"
#: what it calls the run's private directory (HOME, TMP, events, UDS path; replaced by a fresh temp dir)
RUN_TOKEN = "{run}"
#: environment variables that point into the machine's own env; repro.py derives them from --python
MACHINE_ENV = ("PATH", "VIRTUAL_ENV")
DEFAULT_DEADLINE_S = 30.0


def _slug(record: ResultRecord) -> str:
    sid = re.sub(r"[^A-Za-z0-9._=+-]+", "_", record.scenario_id)[:80].strip("_") or "scenario"
    # one folder per run (the run id): a confirmation re-run never overwrites the first run's evidence
    run = re.sub(r"[^A-Za-z0-9]+", "", str(record.run_id or ""))[:16]
    return f"{sid}-{record.key[:8]}" + (f"-{run}" if run else "")


def _run_dir(record: ResultRecord) -> str:
    """The run's private directory: the harness sets HOME to `<run dir>/home` (harness.run.runner)."""
    home = str(record.env.get("HOME", ""))
    if os.path.isabs(home) and os.path.basename(home.rstrip("/\\")) == "home":
        return os.path.dirname(home.rstrip("/\\"))
    return ""


def _tokenize(value: str, prefixes: Dict[str, str]) -> str:
    """`value` with each prefix path (longest first) replaced by its token, at path boundaries only."""
    for prefix in sorted(prefixes, key=len, reverse=True):
        if prefix and len(prefix) > 1:
            value = re.sub(
                re.escape(prefix) + r"(?=$|[\\/:;,'\" ])", prefixes[prefix], value
            )  # tokens: no backslashes
    return value


def target_of(command: List[str]) -> Dict[str, Any]:
    """Where the command listens, read from its flags: {"kind": "tcp", "host", "port"} | {"kind": "uds",
    "path"} | {"kind": "fd", "fd"}. Flags understood: --host/--port (uvicorn, granian, the reference
    server), --uds, --fd, --bind/-b HOST:PORT | unix:PATH | fd://N (gunicorn, hypercorn)."""
    host, port = "127.0.0.1", 8000
    i = 0
    while i < len(command):
        arg = command[i]
        name, eq, inline = arg.partition("=")
        flag = name if eq and name.startswith("-") else arg
        value = inline if eq and name.startswith("-") else (command[i + 1] if i + 1 < len(command) else "")
        step = 1 if eq else 2
        if flag == "--uds":
            return {"kind": "uds", "path": value}
        if flag == "--fd":
            return {"kind": "fd", "fd": int(value)}
        if flag in ("--bind", "-b"):
            if value.startswith("unix:"):
                return {"kind": "uds", "path": value[5:]}
            if value.startswith("fd://"):
                return {"kind": "fd", "fd": int(value[5:])}
            h, _, p = value.rpartition(":")
            host, port = (h.strip("[]") or host), int(p) if p.isdigit() else port
            i += step
            continue
        if flag == "--host":
            host = value
            i += step
            continue
        if flag == "--port":
            port = int(value) if value.isdigit() else port
            i += step
            continue
        i += 1
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return {"kind": "tcp", "host": host, "port": port}


def _pins(record: ResultRecord) -> List[str]:
    if record.installed:
        return [f"{name}=={version}" for name, version in sorted(record.installed.items())]
    return list(record.scenario.get("requirements") or [])


def _config(record: ResultRecord, project_root: str) -> Dict[str, Any]:
    prefixes = {os.path.abspath(project_root): ROOT_TOKEN}
    run_dir = _run_dir(record)
    if run_dir:
        prefixes[run_dir] = RUN_TOKEN
    command = [_tokenize(str(a), prefixes) for a in record.command]
    env = {str(k): _tokenize(str(v), prefixes) for k, v in sorted(record.env.items())}
    workers = int(record.scenario.get("workers") or 1)
    sc = record.scenario
    fault = str(sc.get("fault") or "")
    contract = (record.fault or {}).get("contract") if isinstance(record.fault, dict) else None
    return {
        "command": command,
        "env": env,
        "workers": workers,
        "target": target_of(command),
        "deadline_s": DEFAULT_DEADLINE_S,
        # the fault the harness injected: repro.py does the same (harness.run.faults)
        "fault": {
            "name": fault.partition(":")[0],
            "arg": fault.partition(":")[2],
            "repeat": int(sc.get("fault_repeat") or 1),
            "interval": float(sc.get("fault_interval") or 1.0),
            "expect": str((contract or {}).get("expect", "")) if isinstance(contract, dict) else "",
        }
        if fault
        else {},
        "recorded": {
            "failure_class": record.failure_class,
            "signature": record.signature,
            "platform": str(record.platform.get("sys_platform", "")),
            "python": str(record.python.get("version", "")),
        },
    }


def _fence(content: str) -> str:
    """A code fence longer than any backtick run in `content` (CommonMark: the block cannot be closed
    from inside)."""
    return "`" * max(3, longest_run(content, "`") + 1)


def _block(content: str) -> List[str]:
    body = clean_text(content)
    fence = _fence(body)
    return [fence, body, fence]


def _code(value: Any) -> str:
    """Inline code: the delimiter is longer than any backtick run inside, padded when it touches one."""
    body = one_line(str(value))
    tick = "`" * (longest_run(body, "`") + 1)
    return f"{tick} {body} {tick}" if body.startswith("`") or body.endswith("`") else f"{tick}{body}{tick}"


def _prose(value: Any) -> str:
    """Untrusted text outside code: one line, Markdown and HTML metacharacters escaped."""
    text = one_line(str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_{}\[\]()#+!|~])", r"\\\1", text)


def _readme(record: ResultRecord, pins: List[str]) -> str:
    plat = record.platform
    py = record.python
    stderr = "\n".join(record.stderr_tail.splitlines()[-40:])
    exit_code = record.exit_code if record.exit_code is not None else "-"
    lines = [
        f"# {_prose(record.failure_class)}: {_prose(record.scenario_id)}",
        "",
        f"**Verdict:** {_code(record.verdict)}",
        "",
        f"**Why:** {_prose(record.reason or '-')}",
        "",
        "| | |",
        "|---|---|",
        f"| platform | {_prose(plat.get('system', ''))} {_prose(plat.get('release', ''))} "
        f"{_prose(plat.get('machine', ''))} ({_code(plat.get('sys_platform', ''))}) |",
        f"| python | {_prose(py.get('implementation', ''))} {_prose(py.get('version', ''))} |",
        f"| server | {_prose(record.scenario.get('server', ''))} {_prose(record.server_version)} |",
        f"| workers | {_prose(record.scenario.get('workers', ''))} |",
        f"| exit code | {_prose(exit_code)} {_prose(record.exit_name)} |",
        "",
        "## Installed",
        "",
        *_block("\n".join(pins or ["(nothing recorded)"])),
        "",
        "## Exact command",
        "",
        *_block(shlex.join(record.command)),
        "",
        "Environment set by the harness: `env.json`.",
        "",
        "## Reproduce",
        "",
        "```",
        "python -m venv venv && venv/bin/pip install -r requirements.txt",
        "python repro.py --python venv/bin/python    # Windows: venv\\Scripts\\python.exe",
        "```",
        "",
        "`repro.py` (stdlib only) starts the command in its own process group, probes it with fresh",
        "connections until every worker pid answered (`x-worker-pid`) or the deadline, prints what it saw",
        "and a verdict, then kills the whole tree. Exit status: 0 passed, 1 failed, 2 could not run.",
        "`run.sh` / `run.bat` only start the server, as the harness did.",
        "",
        "## Output (tail)",
        "",
        *_block(stderr or "(empty)"),
        "",
    ]
    return "\n".join(lines)


def _run_sh(config: Dict[str, Any]) -> str:
    def q(value: str) -> str:
        # the capsule folder stands in for the project root, a fresh dir for the run's; the rest is literal
        out = []
        for i, part in enumerate(re.split(r"(\{capsule\}|\{run\})", value)):
            if i % 2:
                out.append('"$HERE"' if part == ROOT_TOKEN else '"$RUN"')
            elif part:
                out.append(shlex.quote(part))
        return "".join(out) or "''"

    env = {k: v for k, v in config["env"].items() if k not in MACHINE_ENV and re.match(r"^[A-Za-z_]\w*$", k)}
    out = [
        "#!/bin/sh",
        "# The server command of the record, with the environment the harness set. Ctrl-C stops it.",
        "# Activate the env built from requirements.txt first. For a probe and a verdict: python3 repro.py",
        'HERE="$(cd "$(dirname "$0")" && pwd)"',
        'RUN="$(mktemp -d)"',
        'cd "$HERE"',
        'export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"',
    ]
    out += [f"mkdir -p {q(v)}" for k, v in env.items() if v.startswith(RUN_TOKEN) and k in _DIR_VARS]
    out += [f"export {k}={q(v)}" for k, v in env.items()]
    out.append("exec " + " ".join(q(a) for a in config["command"]))
    return "\n".join(out) + "\n"


def _ms_quote(arg: str) -> str:
    """One argument as the MS C runtime parses it back (CommandLineToArgvW): always in double quotes,
    backslashes before a quote doubled, quotes escaped."""
    out, slashes = ['"'], 0
    for ch in arg:
        if ch == "\\":
            slashes += 1
            continue
        if ch == '"':
            out.append("\\" * (2 * slashes + 1) + '"')
        else:
            out.append("\\" * slashes + ch)
        slashes = 0
    out.append("\\" * (2 * slashes) + '"')
    return "".join(out)


_CMD_META = re.compile(r'([\^&|<>()!"])')


def cmd_escape(text: str) -> str:
    """Text for a line of a .bat file that cmd.exe passes on literally: every metacharacter caret-escaped
    (`&`, `|`, `<`, `>`, `(`, `)`, `!`, `"`, `^`), `%` doubled (the one thing a caret cannot escape in a batch
    file). So `&` in an app name never starts a second command and `%PATH%` is never expanded."""
    return _CMD_META.sub(r"^\1", text).replace("%", "%%")


def cmd_line(argv: List[str]) -> str:
    """argv as one line of a .bat file: each argument MS-quoted, the whole line cmd-escaped."""
    return cmd_escape(" ".join(_ms_quote(str(a)) for a in argv))


def _run_bat(config: Dict[str, Any]) -> str:
    def q(value: str) -> str:
        return cmd_escape(value).replace(ROOT_TOKEN, "%~dp0.").replace(RUN_TOKEN, "%RUN%")

    out = [
        "@echo off",
        "rem The server command of the record, with the environment the harness set. Ctrl-C stops it.",
        "rem For a probe and a verdict run: python repro.py",
        "setlocal",
        'cd /d "%~dp0"',
        'set "RUN=%TEMP%\\repro-run-%RANDOM%"',
        'set "PYTHONPATH=%~dp0.;%PYTHONPATH%"',
    ]
    env = {k: v for k, v in config["env"].items() if k not in MACHINE_ENV}
    out += [f"mkdir {q(v)} 2>nul" for k, v in env.items() if v.startswith(RUN_TOKEN) and k in _DIR_VARS]
    out += [f"set {cmd_escape(k)}={q(v)}" for k, v in env.items()]
    line = cmd_line(list(config["command"]))
    out.append(line.replace(ROOT_TOKEN, "%~dp0.").replace(RUN_TOKEN, "%RUN%"))
    return "\r\n".join(out) + "\r\n"


_DIR_VARS = (
    "HOME",
    "USERPROFILE",
    "TMP",
    "TEMP",
    "TMPDIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
)


def _copy_servers(project_root: str, dest: str) -> bool:
    src = os.path.join(project_root, "servers")
    if not os.path.isdir(src):
        return False
    target = os.path.join(dest, "servers")
    if os.path.isdir(target):
        shutil.rmtree(target)
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))
    return True


def write_capsule(record: ResultRecord, dest_dir: str, *, project_root: str) -> str:
    """Write the capsule of `record` under `dest_dir`; returns the folder. ValueError for a passed record."""
    if record.failure_class == "passed":
        raise ValueError("a capsule is written for non-passing records only")
    if not record.command:
        raise ValueError("the record has no command to reproduce")
    folder = os.path.join(os.path.abspath(dest_dir), _slug(record))
    os.makedirs(folder, exist_ok=True)
    pins = _pins(record)
    config = _config(record, project_root)

    def write(name: str, text: str, mode: Optional[int] = None) -> None:
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        if mode is not None:
            os.chmod(path, mode)

    write("README.md", _readme(record, pins))
    write("requirements.txt", "".join(p + "\n" for p in pins))
    posix = shlex.join(record.command)
    write("command.txt", f"{posix}\n{cmd_line(list(record.command))}\n")
    write("env.json", json.dumps(record.env, indent=2, sort_keys=True) + "\n")
    write("run.sh", _run_sh(config), 0o755)
    write("run.bat", _run_bat(config))
    write("capsule.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    shipped = os.path.join(os.path.dirname(os.path.abspath(__file__)), "repro.py")
    shutil.copyfile(shipped, os.path.join(folder, "repro.py"))
    os.chmod(os.path.join(folder, "repro.py"), 0o755)
    _copy_servers(project_root, folder)
    return folder


__all__ = ["ROOT_TOKEN", "cmd_escape", "cmd_line", "target_of", "write_capsule"]
