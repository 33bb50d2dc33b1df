"""The Windows lines of a capsule (run.bat, command.txt's second line) keep cmd.exe metacharacters inert
(issue #16 item 14). No cmd.exe here: the line is undone the way cmd.exe undoes a batch line (`^X` -> X,
`%%` -> %, no quote state because every quote is escaped) and then split by the MS C runtime's rules
(CommandLineToArgvW, implemented below from its documentation); the argv must come back exactly."""

import re
from typing import List

import pytest

from harness.capsule import cmd_escape, cmd_line
from tests._payloads import PAYLOADS


def _cmd_unescape(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        ch = line[i]
        if ch == "^" and i + 1 < len(line):
            out.append(line[i + 1])
            i += 2
        elif ch == "%" and line[i + 1 : i + 2] == "%":
            out.append("%")
            i += 2
        else:
            assert ch not in '&|<>()!"%', f"unescaped cmd metacharacter {ch!r} at {i}: {line}"
            out.append(ch)
            i += 1
    return "".join(out)


def _argv_w(line: str) -> List[str]:
    """CommandLineToArgvW: 2n backslashes + quote -> n backslashes, toggle; 2n+1 + quote -> n + literal."""
    args: List[str] = []
    cur: List[str] = []
    quoted = started = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            n = len(re.match(r"\\+", line[i:]).group(0))  # type: ignore[union-attr]
            if line[i + n : i + n + 1] == '"':
                cur.append("\\" * (n // 2))
                if n % 2:
                    cur.append('"')
                else:
                    quoted = not quoted
                i += n + 1
            else:
                cur.append("\\" * n)
                i += n
            started = True
            continue
        if ch == '"':
            quoted, started = not quoted, True
        elif ch in " \t" and not quoted:
            if started:
                args.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(ch)
            started = True
        i += 1
    if started:
        args.append("".join(cur))
    return args


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_every_payload_survives_cmd_and_the_c_runtime(name: str) -> None:
    payload = PAYLOADS[name].replace("\n", " ").replace("\x00", "")
    argv = ["C:\\Program Files\\py\\python.exe", "-m", "uvicorn", f"servers.apps:{payload}", "trail\\", ""]
    line = cmd_line(argv)
    assert _argv_w(_cmd_unescape(line)) == argv


def test_env_values_are_inert_too() -> None:
    assert _cmd_unescape(cmd_escape('a & b | %PATH% ^ "q"')) == 'a & b | %PATH% ^ "q"'
