"""Failure signatures: the one decisive line of a server's output, normalized so that the same failure
reads the same on every machine.

* decisive_line(text) - the line that says what went wrong, "" when nothing does:
  1. the exception line that ends the fatal tracebacks' chains (with chained tracebacks, "During handling
     of the above exception ..." / "The above exception was the direct cause ...", the last link, unless
     it is only a wrapper such as SystemExit; for an ExceptionGroup, its first leaf exception); when
     several tracebacks end differently, the end most of them share (ties: the first) - N workers'
     tracebacks interleave line by line and can cut a chain in two; a traceback that only reports a
     shutdown (KeyboardInterrupt, CancelledError, SystemExit) is skipped;
  2. otherwise the first known fatal log line (gunicorn "Worker failed to boot", uvicorn "Application
     startup failed. Exiting.", "[Errno 98] error while attempting to bind ...", granian "Unexpected
     exit from worker-1", ...), without its log prefix (timestamp, [pid], level).
* normalize(line, platform) - the signature format, documented here because reports and the
  known-issue catalog match on it:

  - ``[WinError N] message`` -> ``[SYMBOL] canonical English message`` (WinError messages are
    localized; the code is not): ``OSError: [WinError 10022] An invalid argument was supplied`` ->
    ``OSError: [WSAEINVAL] An invalid argument was supplied``;
  - ``[Errno N]`` -> ``[SYMBOL]`` read with the errno table of `platform`, the OS the text came from
    (EADDRINUSE is 98 on Linux, 48 on macOS, 10048 in Windows socket errors); ``(os error N)``
    (Rust, granian) -> ``(os error SYMBOL)``; unknown numbers are kept;
  - placeholders: ``<path>`` (POSIX/Windows/UDS paths, temp dirs), ``<addr>`` (IPv4/IPv6 with or
    without port, ``('127.0.0.1', 8000)`` tuples, URLs' host:port), ``<port>``, ``<pid>``, ``<fd>``,
    ``<hex>`` (0x... addresses), ``line <n>``, ``<time>`` (timestamps);
  - ANSI colour codes dropped, whitespace collapsed, at most 300 characters.

* signature_for(text, platform) - normalize(decisive_line(text), platform).
* distinguishing_line(failing, passing, platform) -> the signature told apart from a passing twin (the
  same scenario at the release before, the bisect's last good version, a catalog entry's fixed case):
  the failing run's decisive line when no passing run logs it, else the first error-looking line of the
  failing run that none of the passing runs logs (normalized), else "" (nothing tells them apart). A
  line that passing runs log too is never the signature.
* launch_problem(text) -> (kind, line) or None - the server's interpreter or CLI refused the command line
  the harness built, before any server code ran: kind "entry-point" (`python -m X` where release X has no
  `__main__`, a module or script that is not there: the harness launched it wrongly - harness-error) or
  "flag" (the CLI rejected a flag this release does not have: click's `No such option`, argparse's
  `unrecognized arguments` - the scenario cannot be expressed at this version: unsupported).

`platform` is a sys.platform value ("linux", "darwin", "win32"); "freebsd*"/"openbsd*" read with the
BSD (darwin) numbers, anything else unknown with Linux's.
"""

import re
from typing import Dict, List, Optional, Tuple

MAX_LEN = 300

# --- errno tables (fixed: never read from the running machine's `errno` module) -----------------

# fmt: off
_LINUX: Dict[int, str] = {
    1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 8: "ENOEXEC",
    9: "EBADF", 10: "ECHILD", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 16: "EBUSY",
    17: "EEXIST", 18: "EXDEV", 19: "ENODEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 23: "ENFILE",
    24: "EMFILE", 25: "ENOTTY", 26: "ETXTBSY", 27: "EFBIG", 28: "ENOSPC", 29: "ESPIPE", 30: "EROFS",
    31: "EMLINK", 32: "EPIPE", 33: "EDOM", 34: "ERANGE", 35: "EDEADLK", 36: "ENAMETOOLONG",
    38: "ENOSYS", 39: "ENOTEMPTY", 40: "ELOOP", 88: "ENOTSOCK", 89: "EDESTADDRREQ", 90: "EMSGSIZE",
    91: "EPROTOTYPE", 92: "ENOPROTOOPT", 93: "EPROTONOSUPPORT", 94: "ESOCKTNOSUPPORT",
    95: "EOPNOTSUPP", 96: "EPFNOSUPPORT", 97: "EAFNOSUPPORT", 98: "EADDRINUSE", 99: "EADDRNOTAVAIL",
    100: "ENETDOWN", 101: "ENETUNREACH", 102: "ENETRESET", 103: "ECONNABORTED", 104: "ECONNRESET",
    105: "ENOBUFS", 106: "EISCONN", 107: "ENOTCONN", 108: "ESHUTDOWN", 110: "ETIMEDOUT",
    111: "ECONNREFUSED", 112: "EHOSTDOWN", 113: "EHOSTUNREACH", 114: "EALREADY", 115: "EINPROGRESS",
}

# macOS (and the BSDs for the networking range): <sys/errno.h>.
_DARWIN: Dict[int, str] = {
    1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 8: "ENOEXEC",
    9: "EBADF", 10: "ECHILD", 11: "EDEADLK", 12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 16: "EBUSY",
    17: "EEXIST", 18: "EXDEV", 19: "ENODEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 23: "ENFILE",
    24: "EMFILE", 25: "ENOTTY", 26: "ETXTBSY", 27: "EFBIG", 28: "ENOSPC", 29: "ESPIPE", 30: "EROFS",
    31: "EMLINK", 32: "EPIPE", 33: "EDOM", 34: "ERANGE", 35: "EAGAIN", 36: "EINPROGRESS",
    37: "EALREADY", 38: "ENOTSOCK", 39: "EDESTADDRREQ", 40: "EMSGSIZE", 41: "EPROTOTYPE",
    42: "ENOPROTOOPT", 43: "EPROTONOSUPPORT", 44: "ESOCKTNOSUPPORT", 45: "ENOTSUP",
    46: "EPFNOSUPPORT", 47: "EAFNOSUPPORT", 48: "EADDRINUSE", 49: "EADDRNOTAVAIL", 50: "ENETDOWN",
    51: "ENETUNREACH", 52: "ENETRESET", 53: "ECONNABORTED", 54: "ECONNRESET", 55: "ENOBUFS",
    56: "EISCONN", 57: "ENOTCONN", 58: "ESHUTDOWN", 60: "ETIMEDOUT", 61: "ECONNREFUSED", 62: "ELOOP",
    63: "ENAMETOOLONG", 64: "EHOSTDOWN", 65: "EHOSTUNREACH", 66: "ENOTEMPTY", 78: "ENOSYS",
    102: "EOPNOTSUPP",
}

# Windows: Winsock (WSA*) codes, which Python reports both as [WinError N] and as OSError.errno, and
# the Win32 system errors seen around sockets and pipes. Each with its English FormatMessage text.
_WINDOWS: Dict[int, Tuple[str, str]] = {
    2: ("ERROR_FILE_NOT_FOUND", "The system cannot find the file specified"),
    3: ("ERROR_PATH_NOT_FOUND", "The system cannot find the path specified"),
    5: ("ERROR_ACCESS_DENIED", "Access is denied"),
    6: ("ERROR_INVALID_HANDLE", "The handle is invalid"),
    32: ("ERROR_SHARING_VIOLATION",
         "The process cannot access the file because it is being used by another process"),
    64: ("ERROR_NETNAME_DELETED", "The specified network name is no longer available"),
    87: ("ERROR_INVALID_PARAMETER", "The parameter is incorrect"),
    109: ("ERROR_BROKEN_PIPE", "The pipe has been ended"),
    232: ("ERROR_NO_DATA", "The pipe is being closed"),
    995: ("ERROR_OPERATION_ABORTED",
          "The I/O operation has been aborted because of either a thread exit or an application request"),
    1225: ("ERROR_CONNECTION_REFUSED", "The remote computer refused the network connection"),
    1236: ("ERROR_CONNECTION_ABORTED", "The network connection was aborted by the local system"),
    10004: ("WSAEINTR", "A blocking operation was interrupted by a call to WSACancelBlockingCall"),
    10009: ("WSAEBADF", "The file handle supplied is not valid"),
    10013: ("WSAEACCES",
            "An attempt was made to access a socket in a way forbidden by its access permissions"),
    10014: ("WSAEFAULT", "The system detected an invalid pointer address in attempting to use a "
            "pointer argument in a call"),
    10022: ("WSAEINVAL", "An invalid argument was supplied"),
    10024: ("WSAEMFILE", "Too many open sockets"),
    10035: ("WSAEWOULDBLOCK", "A non-blocking socket operation could not be completed immediately"),
    10036: ("WSAEINPROGRESS", "A blocking operation is currently executing"),
    10037: ("WSAEALREADY", "An operation was attempted on a non-blocking socket that already had an "
            "operation in progress"),
    10038: ("WSAENOTSOCK", "An operation was attempted on something that is not a socket"),
    10040: ("WSAEMSGSIZE", "A message sent on a datagram socket was larger than the internal message "
            "buffer or some other network limit, or the buffer used to receive a datagram into was "
            "smaller than the datagram itself"),
    10042: ("WSAENOPROTOOPT", "An unknown, invalid, or unsupported option or level was specified in a "
            "getsockopt or setsockopt call"),
    10043: ("WSAEPROTONOSUPPORT", "The requested protocol has not been configured into the system, or "
            "no implementation for it exists"),
    10045: ("WSAEOPNOTSUPP", "The attempted operation is not supported for the type of object referenced"),
    10047: ("WSAEAFNOSUPPORT", "An address incompatible with the requested protocol was used"),
    10048: ("WSAEADDRINUSE",
             "Only one usage of each socket address (protocol/network address/port) is normally permitted"),
    10049: ("WSAEADDRNOTAVAIL", "The requested address is not valid in its context"),
    10050: ("WSAENETDOWN", "A socket operation encountered a dead network"),
    10051: ("WSAENETUNREACH", "A socket operation was attempted to an unreachable network"),
    10053: ("WSAECONNABORTED", "An established connection was aborted by the software in your host machine"),
    10054: ("WSAECONNRESET", "An existing connection was forcibly closed by the remote host"),
    10055: ("WSAENOBUFS", "An operation on a socket could not be performed because the system lacked "
             "sufficient buffer space or because a queue was full"),
    10056: ("WSAEISCONN", "A connect request was made on an already connected socket"),
    10057: ("WSAENOTCONN", "A request to send or receive data was disallowed because the socket is not "
             "connected and (when sending on a datagram socket using a sendto call) no address was "
             "supplied"),
    10058: ("WSAESHUTDOWN", "A request to send or receive data was disallowed because the socket had "
             "already been shut down in that direction with a previous shutdown call"),
    10060: ("WSAETIMEDOUT", "A connection attempt failed because the connected party did not properly "
             "respond after a period of time, or established connection failed because connected "
             "host has failed to respond"),
    10061: ("WSAECONNREFUSED", "No connection could be made because the target machine actively refused it"),
    10065: ("WSAEHOSTUNREACH", "A socket operation was attempted to an unreachable host"),
    10093: ("WSANOTINITIALISED", "Either the application has not called WSAStartup, or WSAStartup failed"),
}

# Windows' C runtime errno (OSError.errno of non-socket calls): the low numbers match POSIX.
_WINDOWS_CRT: Dict[int, str] = {
    k: v for k, v in _LINUX.items() if k <= 34 and k not in (11, 15)
}
# fmt: on
_WINDOWS_CRT.update({11: "EAGAIN", 36: "EDEADLK", 38: "ENAMETOOLONG", 41: "ENOTEMPTY"})


def _table(platform: str) -> Dict[int, str]:
    p = (platform or "").lower()
    if p.startswith("win") or p == "cygwin":
        table = dict(_WINDOWS_CRT)
        table.update({k: v[0] for k, v in _WINDOWS.items() if k >= 10000})
        return table
    if p.startswith(("darwin", "mac", "freebsd", "openbsd", "netbsd", "dragonfly")):
        return _DARWIN
    return _LINUX


def errno_symbol(number: int, platform: str) -> Optional[str]:
    """The symbolic name of errno `number` on `platform`, None when not in the fixed table."""
    return _table(platform).get(number)


def winerror_symbol(number: int) -> Optional[str]:
    """The symbolic name of a Windows error code ([WinError N]), None when unknown."""
    entry = _WINDOWS.get(number)
    return entry[0] if entry else None


# --- decisive_line ----------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\?\[[0-9;]*m")
_TRACEBACK = "Traceback (most recent call last):"
_CHAINED = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
# "Name: message" or a bare "Name" at the start of a line: a dotted name whose last part looks like an
# exception class. Log lines ("INFO: ...", "socket: <...>") do not match.
_EXC = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*"
    r"(?:[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning|Failure|Fault|Timeout|Server)"
    r"|StopIteration|StopAsyncIteration|GeneratorExit|CancelledError)"
    r"(?::\s.*|:)?$"
)
# Exception classes that only report how a process was stopped; never decisive on their own.
_WRAPPERS = re.compile(r"^(?:[\w.]*\.)?(?:SystemExit|KeyboardInterrupt|CancelledError|GeneratorExit)\b")
# Quoting and framing that issue threads and log collectors add in front of lines.
_FRAME = re.compile(r"^\s*(?:>\s?|\u2502\s?|\|\s)")
# docker compose: "service-1  | line"
_COMPOSE = re.compile(r"^[\w.-]+\s+\|\s?")
_LOG_PREFIX = re.compile(
    r"^(?:\[?\d{4}-\d\d-\d\d[ T][\d:.,]+(?:\s?(?:[+-]\d\d:?\d\d|Z|UTC))?\]?\s*)?"
    r"(?:\[\d+\]\s*)?"
    r"(?:\[?(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL|TRACE)\]?:?\s+)?"
    r"(?:\[\d+\]\s*)?"
)
#: known fatal log lines, most telling first; matched (case-insensitive) anywhere in a line.
FATAL_LOG_PATTERNS: Tuple[str, ...] = (
    r"^servers: (?:internal )?error: ",  # the reference server's one-line reason (servers/_cli.py)
    r"error while attempting to bind on address",
    r"\[(?:Errno|WinError) \d+\]",
    r"\(os error \d+\)",
    r"Application startup failed\. Exiting\.",
    r"Error loading ASGI app",
    r"Worker failed to boot",
    r"App failed to load",
    r"Unexpected exit from worker",
    r"Worker \(pid:\d+\) (?:exited|was sent)",
    r"Child process \[\d+\] died",
    r"address already in use",
    r"Exception in worker process",
)
_FATAL = [re.compile(p, re.IGNORECASE) for p in FATAL_LOG_PATTERNS]


def _clean_lines(text: str) -> List[str]:
    out = []
    for raw in _ANSI.sub("", text or "").splitlines():
        line = _FRAME.sub("", _COMPOSE.sub("", raw, count=1), count=1)
        out.append(line.rstrip().rstrip("\u2502").rstrip())
    return out


def _exception_at(line: str) -> bool:
    # Exception lines start at column 0; frame lines are indented.
    return bool(line) and not line[0].isspace() and bool(_EXC.match(line))


def _chain_end(lines: List[str], start: int) -> Tuple[List[str], int]:
    """From a 'Traceback' header at `start`: the exception lines of the chain and the index after it."""
    chain: List[str] = []
    i = start + 1
    while i < len(lines):
        line = lines[i]
        if _exception_at(line):
            chain.append(line.strip())
            # a chained traceback follows after a blank line and one of the _CHAINED sentences
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith(" ")):
                j += 1
            if j < len(lines) and lines[j].strip() in _CHAINED:
                k = j + 1
                while k < len(lines) and lines[k].strip() != _TRACEBACK:
                    k += 1
                i = k + 1
                continue
            return chain, i + 1
        i += 1
    return chain, i


_GROUP = re.compile(r"^(?:[\w.]*\.)?(?:Base)?ExceptionGroup\b")


def _from_chain(chain: List[str]) -> str:
    meaningful = [c for c in chain if not _WRAPPERS.match(c)]
    return meaningful[-1] if meaningful else ""


def _strip_log_prefix(line: str) -> str:
    return _LOG_PREFIX.sub("", line.strip(), count=1).strip()


def _intermediate_links(lines: List[str]) -> "set[str]":
    """Exception lines that some occurrence shows chained onward (a _CHAINED sentence comes next, past
    blank lines)."""
    out = set()
    for i, line in enumerate(lines):
        if not _exception_at(line):
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j < len(lines) and lines[j].strip() in _CHAINED:
            out.add(line.strip())
    return out


def decisive_line(text: str) -> str:
    """The line of `text` that says what went wrong; "" when nothing does (see the module docstring)."""
    lines = _clean_lines(text)
    found_at: List[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip().endswith(_TRACEBACK):  # also "ERROR:    Traceback ..." from a logger
            chain, nxt = _chain_end(lines, i)
            found = _from_chain(chain)
            if found and _GROUP.match(found):
                # an exception group says only "unhandled errors in a TaskGroup": its first leaf decides
                leaf = next((ln for ln in lines[nxt:] if _exception_at(ln) and not _GROUP.match(ln)), "")
                found = leaf.strip() or found
            if found:
                found_at.append(found)
            i = max(nxt, i + 1)
            continue
        i += 1
    if found_at:
        # N workers that fail alike write N tracebacks to one stderr, line by line, so they interleave and a
        # chain can be cut in two: its first link then reads as a chain of its own, in some runs and not in
        # others. A line that is followed by "During handling ..." anywhere in the output is a link, not an
        # end: it is dropped while a real end remains. Then the end most tracebacks agree on is the failure
        # (ties: the first seen), so the same failure reads the same however the lines interleaved.
        links = _intermediate_links(lines)
        ends = [f for f in found_at if f not in links]
        found_at = ends or found_at
        counts: Dict[str, int] = {}
        for found in found_at:
            counts[found] = counts.get(found, 0) + 1
        return max(found_at, key=lambda f: (counts[f], -found_at.index(f)))
    for pattern in _FATAL:
        for line in lines:
            if pattern.search(line):
                return _strip_log_prefix(line)
    return ""


# --- normalize -------------------------------------------------------------------------------------

_WINERROR = re.compile(r"\[WinError (\d+)\]\s*(.*)$")
_ERRNO = re.compile(r"\[Errno (-?\d+)\]")
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_ERRNO_TUPLE = re.compile(r"\b([A-Z]\w*(?:Error|Exception))\((\d+),")

_TIME = re.compile(
    r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d)?(?:[.,]\d+)?(?:\s?(?:[+-]\d\d:?\d\d|Z|UTC)\b)?"
    r"|\b\d\d:\d\d:\d\d(?:[.,]\d+)?\b"
)
_URL = re.compile(r"\b(https?|wss?|unix|tcp|fd)://[^\s'\")]+")
_ADDR_TUPLE = re.compile(r"\(\s*'[^']*'\s*,\s*\d+\s*(?:,\s*\d+\s*){0,2}\)")
_IPV6_PORT = re.compile(r"\[[0-9A-Fa-f:.%\w]*:[0-9A-Fa-f:.%\w]*\](?::\d+)?")
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?![\w.])")
_IPV6 = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
    r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?"
    r"(?:%\w+)?(?![\w:])"
)
_QUOTED_PATH = re.compile(r"""(['"])(?:[A-Za-z]:[\\/]|\\\\|/|~[\\/]|\.{1,2}[\\/])[^'"]*\1""")
_WIN_PATH = re.compile(r"(?<![\w])[A-Za-z]:[\\/][^\s'\",;:)\]]*")
_POSIX_PATH = re.compile(r"(?<![\w.:/<>-])(?:~|\.{1,2})?/(?:[\w.@+~%-]+/)*[\w.@+~%-]+/?")
_HEX = re.compile(r"\b0x[0-9A-Fa-f]+\b")
_LINE_NO = re.compile(r"\bline \d+")
_PID = re.compile(r"\b(pid|PID|process|Process)(\s*[:=]?\s*\[?)\d+")
_BRACKET_NUM = re.compile(r"\[\d{2,}\]")
_PAREN_PID = re.compile(r"\(\d{3,}\)")
_PORT = re.compile(r"\b(port)(\s*[:=]?\s*)\d+\b", re.IGNORECASE)
_FD = re.compile(r"\bfd(\s*[:=]\s*)\d+\b")
# worker numbers vary with which worker a fault hit or died first (granian: "Unexpected exit from worker-2")
_WORKER_NO = re.compile(r"\b(worker)([-_ #]?)\d+\b", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def _winerror(match: "re.Match[str]") -> str:
    number = int(match.group(1))
    entry = _WINDOWS.get(number)
    if entry is None:
        return match.group(0)
    # The message is localized (a French Windows says "Une seule utilisation de chaque adresse ..."):
    # the code decides, so the canonical English text replaces it.
    return f"[{entry[0]}] {entry[1]}"


def normalize(line: str, platform: str) -> str:
    """`line` with machine-specific parts replaced, error numbers as symbols (module docstring)."""
    s = _ANSI.sub("", line or "").strip()
    if not s:
        return ""
    s = _WINERROR.sub(_winerror, s)
    table = _table(platform)

    def errno_sub(m: "re.Match[str]") -> str:
        name = table.get(int(m.group(1)))
        return f"[{name}]" if name else m.group(0)

    s = _ERRNO.sub(errno_sub, s)

    def os_error_sub(m: "re.Match[str]") -> str:
        name = table.get(int(m.group(1)))
        return f"(os error {name})" if name else m.group(0)

    s = _OS_ERROR.sub(os_error_sub, s)

    def tuple_sub(m: "re.Match[str]") -> str:
        name = table.get(int(m.group(2)))
        return f"{m.group(1)}({name}," if name else m.group(0)

    s = _ERRNO_TUPLE.sub(tuple_sub, s)
    s = _TIME.sub("<time>", s)
    s = _URL.sub(lambda m: f"{m.group(1)}://<addr>", s)
    s = _ADDR_TUPLE.sub("(<addr>)", s)
    s = _QUOTED_PATH.sub(lambda m: f"{m.group(1)}<path>{m.group(1)}", s)
    s = _WIN_PATH.sub("<path>", s)
    s = _IPV6_PORT.sub("<addr>", s)
    s = _IPV4.sub("<addr>", s)
    s = _IPV6.sub(
        lambda m: "<addr>" if re.search(r"[0-9A-Fa-f]", m.group(0)) or m.group(0) == "::" else m.group(0), s
    )
    s = _POSIX_PATH.sub("<path>", s)
    s = _HEX.sub("<hex>", s)
    s = _LINE_NO.sub("line <n>", s)
    s = _PID.sub(lambda m: f"{m.group(1)}{m.group(2)}<pid>", s)
    s = _FD.sub(lambda m: f"fd{m.group(1)}<fd>", s)
    s = _WORKER_NO.sub(lambda m: f"{m.group(1)}{m.group(2)}<n>", s)
    s = _PORT.sub(lambda m: f"{m.group(1)}{m.group(2)}<port>", s)
    s = _BRACKET_NUM.sub("[<pid>]", s)
    s = _PAREN_PID.sub("(<pid>)", s)
    s = _SPACE.sub(" ", s).strip()
    if len(s) > MAX_LEN:
        s = s[: MAX_LEN - 3].rstrip() + "..."
    return s


#: the interpreter could not start what the harness named (CPython's own messages, every version since 3.4)
_ENTRY_POINT = [
    re.compile(r"No module named [\w.]+\.__main__; '[\w.]+' is a package and cannot be directly executed"),
    re.compile(r"^\S*python[\d.]*(?:\.exe)?: No module named [\w.]+$"),
    re.compile(r"^\S*python[\d.]*(?:\.exe)?: can't open file .*\[Errno \d+\]"),
]
#: the server's CLI rejected a flag (click: `Error: No such option: --x` / `no such option`, `Got unexpected
#: extra argument`; argparse: `PROG: error: unrecognized arguments: --x`)
_FLAG = [
    re.compile(r"^Error: (?:No such option|no such option): \S+", re.IGNORECASE),
    re.compile(r"^Error: Got unexpected extra arguments? \(.*\)"),
    re.compile(r"^[\w.-]+: error: unrecognized arguments: .+"),
    re.compile(r"^[\w.-]+: error: argument [^:]+: (?:invalid choice|expected one argument).*"),
]


def launch_problem(text: str) -> Optional[Tuple[str, str]]:
    """("entry-point" | "flag", the line) when the output says the command line itself was refused."""
    for line in _clean_lines(text)[:200]:
        stripped = line.strip()
        if any(p.search(stripped) for p in _ENTRY_POINT):
            return "entry-point", stripped
        if any(p.search(stripped) for p in _FLAG):
            return "flag", stripped
    return None


_ERRORISH = re.compile(
    r"(?:\b\w*(?:Error|Exception)\b|\berror\b|\bfailed\b|\bfatal\b|\bcritical\b|"
    r"\[Errno |\[WinError |\(os error |\bdied\b|\bkilled\b|\btimed? ?out\b)",
    re.IGNORECASE,
)


def _normalized_lines(text: str, platform: str) -> List[str]:
    out = []
    for line in _clean_lines(text):
        norm = normalize(_strip_log_prefix(line.strip()), platform)
        if norm:
            out.append(norm)
    return out


def distinguishing_line(failing: str, passing: "List[str]", platform: str) -> str:
    """The failing run's line that its passing twins do not log (module doc); "" when none does."""
    seen = {line for text in passing for line in _normalized_lines(text, platform)}
    own = normalize(decisive_line(failing), platform)
    if own and own not in seen:
        return own
    for line in _normalized_lines(failing, platform):
        if line not in seen and _ERRORISH.search(line):
            return line
    return ""


def signature_for(text: str, platform: str) -> str:
    """The signature of a server's output: normalize(decisive_line(text), platform); "" when none."""
    return normalize(decisive_line(text), platform)


__all__ = [
    "FATAL_LOG_PATTERNS",
    "decisive_line",
    "distinguishing_line",
    "errno_symbol",
    "launch_problem",
    "normalize",
    "signature_for",
    "winerror_symbol",
]
