#!/usr/bin/env python3
"""Reproduce one harness record without the harness (stdlib only, Python 3.7+).

Starts the recorded server command in its own process group, probes it on loopback with bursts of
fresh connections until N distinct `x-worker-pid` values answered or the deadline passed, prints what
it saw and a verdict, then stops and kills the whole tree.

Exit status: 0 the server passed, 1 it failed, 2 the reproduction could not run.

The fault the harness injected is injected again: a stale socket file or a busy port before the start;
once every worker answered, SIGKILL of one / K / every worker (kill-workers holds the master with SIGSTOP
while they die), SIGKILL of the master, or a signal to the master N times (a reload signal only once the
last reload is done - old workers gone, N new ones answering - as the harness sends it). What follows is
judged as the harness does, by the same class names: startup-failure, partial-workers, excess-workers,
respawn-loop (worker processes keep being replaced and none serves), wrong-listener (the group listens
elsewhere than asked), leak (a worker outlives its killed master, the master's fds / threads grow after
the signals - sampled once the worker count settled -, the socket file survives the stop),
contract-violation (workers replaced where the signal's contract keeps them). The process tree and its
sockets are read from /proc on Linux and from `ps` elsewhere; where neither tells, that check is skipped
and said so.

This file is copied as it is into every capsule (harness.capsule.write_capsule), beside capsule.json; it
runs in the server's own env, wherever that is: Python 3.7+ and the standard library only, no import of
the harness. Its platform branches live here because the file leaves the project. Its verdict is its own
small check (N distinct worker pids answered, the exit code), not the harness's classifier: the capsule
says whether the server still fails, the record says how.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
#: what the harness recorded (written beside this file by harness.capsule.write_capsule): the command,
#: its environment, the target, the deadline, the workers and the recorded verdict
with open(os.path.join(HERE, "capsule.json"), encoding="utf-8") as _fh:
    CONFIG = json.load(_fh)
ROOT_TOKEN = "{capsule}"
RUN_TOKEN = "{run}"
DIR_VARS = (
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
MACHINE_ENV = ("PATH", "VIRTUAL_ENV")


def say(msg):
    print("repro: " + msg, flush=True)


def cannot_run(msg):
    sys.stderr.write("repro: cannot run: %s\n" % msg)
    sys.exit(2)


def rooted(value, run_dir):
    return value.replace(ROOT_TOKEN, HERE).replace(RUN_TOKEN, run_dir)


def server_env(python, run_dir):
    """The recorded environment with today's paths: capsule for the project root, a fresh run dir, and
    PATH / VIRTUAL_ENV of --python's env instead of the original machine's."""
    env = dict(os.environ)
    for key, value in CONFIG["env"].items():
        if key in MACHINE_ENV:
            continue
        env[key] = rooted(value, run_dir)
        if key in DIR_VARS and RUN_TOKEN in value:
            os.makedirs(env[key], exist_ok=True)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH", "")) if p)
    if python:
        bindir = os.path.dirname(os.path.abspath(python))
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        root = os.path.dirname(bindir)
        if os.path.exists(os.path.join(root, "pyvenv.cfg")):
            env["VIRTUAL_ENV"] = root
    return env


def python_like(path):
    return os.path.basename(path).lower().startswith(("python", "pypy", "py.exe"))


def resolve_argv(argv, python, run_dir):
    argv = [rooted(a, run_dir) for a in argv]
    exe = argv[0]
    if python:
        if python_like(exe):
            return [python] + argv[1:]
        name = os.path.splitext(os.path.basename(exe))[0]
        return [python, "-m", name] + argv[1:]
    if os.path.exists(exe) or shutil.which(exe):
        return argv
    if python_like(exe):
        say("recorded interpreter %s not found; using %s (pass --python to choose)" % (exe, sys.executable))
        return [sys.executable] + argv[1:]
    found = shutil.which(os.path.basename(exe))
    if found:
        return [found] + argv[1:]
    cannot_run("%s not found; pass --python PATH of an env with requirements.txt" % exe)


def free_port(host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_busy(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def remake_paths(argv, env, target, tmp):
    """Absolute paths of the original run whose directory is gone move into `tmp`."""
    moved = {}

    def fix(value):
        for sep in ("unix:", ""):
            if value.startswith(sep) and os.path.isabs(value[len(sep) :]):
                path = value[len(sep) :]
                parent = os.path.dirname(path)
                if parent and not os.path.isdir(parent):
                    new = moved.get(path) or os.path.join(tmp, os.path.basename(path) or "x")
                    moved[path] = new
                    return sep + new
        return value

    argv = [fix(a) for a in argv]
    for key, value in list(env.items()):
        if (
            os.path.isabs(value)
            and not os.path.exists(value)
            and (
                key in ("HOME", "USERPROFILE", "TMPDIR", "TEMP", "TMP", "XDG_RUNTIME_DIR")
                or key.endswith("_DIR")
            )
        ):
            new = os.path.join(tmp, key.lower())
            os.makedirs(new, exist_ok=True)
            moved[value] = new
            env[key] = new
    if target["kind"] == "uds" and target["path"] in moved:
        target = dict(target, path=moved[target["path"]])
    for old, new in sorted(moved.items()):
        say("path of the original run re-made: %s -> %s" % (old, new))
    return argv, env, target


def retarget_port(argv, target):
    host, port = target["host"], int(target["port"])
    if port and not port_busy(host, port):
        return argv, target
    new = free_port(host)
    say("port %s is %s; using free port %s" % (port, "0 (chosen by the server)" if not port else "busy", new))
    out = []
    for i, a in enumerate(argv):
        prev = argv[i - 1] if i else ""
        if prev == "--port" and a == str(port):
            a = str(new)
        elif a == "--port=%s" % port:
            a = "--port=%s" % new
        elif (prev in ("--bind", "-b") or a.startswith("--bind=")) and a.endswith(":%s" % port):
            a = a[: -len(str(port))] + str(new)
        out.append(a)
    return out, dict(target, port=new)


def request(target, timeout):
    """One GET / on a fresh connection: (status, headers) or raises OSError."""
    if target["kind"] == "uds":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = target["path"]
    else:
        family = socket.AF_INET6 if ":" in target["host"] else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        address = (target["host"], int(target["port"]))
    s.settimeout(timeout)
    try:
        s.connect(address)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        raise ConnectionResetError("no HTTP response (%d bytes)" % len(data))
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def burst(target, n, seen):
    def one():
        try:
            status, headers = request(target, 2.0)
        except OSError as exc:
            key = type(exc).__name__
            with seen["lock"]:
                seen["errors"][key] = seen["errors"].get(key, 0) + 1
            return
        with seen["lock"]:
            seen["responses"] += 1
            seen["status"][status] = seen["status"].get(status, 0) + 1
            pid = headers.get("x-worker-pid")
            if pid:
                seen["pids"][pid] = seen["pids"].get(pid, 0) + 1

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def hold_fd(target):
    """For an --fd command: bind 127.0.0.1:0 and put the listening socket at fd N, as the harness did.
    Called before any other file is opened, so that N is free (or already the socket)."""
    if target["kind"] != "fd":
        return None
    if sys.platform == "win32":
        cannot_run("an inherited --fd socket is not reproducible standalone on Windows")
    fd = int(target["fd"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    if fd == 0:  # the socket becomes the server's stdin (Popen dup2s it there)
        target.update(kind="tcp", host="127.0.0.1", port=sock.getsockname()[1], stdin=sock.fileno())
        return sock
    if sock.fileno() != fd:
        try:
            os.fstat(fd)
        except OSError:
            os.dup2(sock.fileno(), fd)
        else:
            cannot_run("fd %d is already in use here; cannot pass the socket there" % fd)
    os.set_inheritable(fd, True)
    target.update(kind="tcp", host="127.0.0.1", port=sock.getsockname()[1], fd=fd)
    return sock


def start(argv, env, log, target):
    kwargs = {"stdin": subprocess.DEVNULL, "stdout": log, "stderr": subprocess.STDOUT}
    kwargs.update(env=env, cwd=HERE)
    if sys.platform == "win32":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True
    if "stdin" in target:
        kwargs["stdin"] = target["stdin"]
    elif "fd" in target:
        kwargs["pass_fds"] = (int(target["fd"]),)
    return subprocess.Popen(argv, **kwargs)


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(proc, grace):
    """Stop signal to the whole group, then kill what is left. Returns what it had to do."""
    if sys.platform == "win32":
        if proc.poll() is None:
            try:
                proc.send_signal(signal.CTRL_BREAK_EVENT)
                proc.wait(grace)
            except (OSError, subprocess.TimeoutExpired):
                pass
        subprocess.call(
            ["taskkill", "/F", "/T", "/PID", str(proc.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc.wait()
        return "stopped"
    pgid = proc.pid
    how = "stopped by SIGTERM"
    if group_alive(pgid):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not group_alive(pgid):
            break
        time.sleep(0.05)
    else:
        how = "killed by SIGKILL after %.0fs" % grace
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while group_alive(pgid) and time.monotonic() < deadline:
        os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.05)
    if group_alive(pgid):
        how += "; processes of the group still present (zombies of another parent?)"
    return how


# --- the process tree, its sockets and its resources ---------------------------------------------------


def _processes():
    """{pid: ppid} of every live (non-zombie) process, or None when this OS does not say."""
    if os.path.isdir("/proc/self/fd"):  # Linux
        out = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % name, "rb") as fh:
                    rest = fh.read().decode("latin-1").rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if rest and rest[0] not in ("Z", "X"):
                out[int(name)] = int(rest[1])
        return out
    if sys.platform == "win32":
        return None
    try:  # macOS, the BSDs
        text = subprocess.check_output(["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "stat="], timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    out = {}
    for line in text.decode("latin-1").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and not parts[2].startswith("Z"):
            out[int(parts[0])] = int(parts[1])
    return out


def descendants(pid):
    """The live descendants of pid, or None when this OS does not say."""
    table = _processes()
    if table is None:
        return None
    kids = {}
    for child, parent in table.items():
        kids.setdefault(parent, []).append(child)
    out, stack = set(), [pid]
    while stack:
        for child in kids.get(stack.pop(), ()):
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


def running(pid):
    """pid exists and is not a zombie."""
    table = _processes()
    if table is not None:
        return pid in table
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _hex_addr(text, v6):
    raw = bytes.fromhex(text)
    if not v6:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def listeners(pids):
    """[("tcp", host, port) | ("unix", path)] the pids listen on (Linux /proc), or None elsewhere."""
    if not os.path.isdir("/proc/net"):
        return None
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    out = []
    for name, v6 in (("tcp", False), ("tcp6", True)):
        try:
            with open("/proc/net/" + name) as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                host, port = f[1].split(":")
                out.append(("tcp", _hex_addr(host, v6), int(port, 16)))
    try:
        with open("/proc/net/unix") as fh:
            for line in fh.read().splitlines()[1:]:
                f = line.split()
                if len(f) > 7 and f[6] in inodes and int(f[3], 16) & 0x10000:  # __SO_ACCEPTCON
                    out.append(("unix", f[7]))
    except OSError:
        pass
    return sorted(set(out))


def resources(pid):
    """(open fds, threads) of pid (Linux /proc), or None elsewhere."""
    try:
        fds = len(os.listdir("/proc/%d/fd" % pid))
        with open("/proc/%d/status" % pid) as fh:
            threads = next(int(line.split()[1]) for line in fh if line.startswith("Threads:"))
    except (OSError, StopIteration, ValueError):
        return None
    return fds, threads


def elsewhere(found, target):
    """The listeners that are not the asked target (one line), or "" when every one is."""
    asked = (
        ("unix", target["path"]) if target["kind"] == "uds" else ("tcp", target["host"], int(target["port"]))
    )
    other = [f for f in found if f != asked]
    if not other:
        return ""
    text = ", ".join("%s %s" % (f[0], f[1] if f[0] == "unix" else "%s:%s" % (f[1], f[2])) for f in other)
    return "listening on %s (asked %s)" % (text, asked[1] if asked[0] == "unix" else "%s:%s" % asked[1:])


# --- the fault, as the harness injected it (harness.run.faults) ----------------------------------------

#: seconds a fault's outcome is watched for (the harness's RECOVERY_S, NO_REPLACEMENT_S, ORPHAN_PROOF_S)
RECOVERY_S = 20.0
SETTLE_S = 8.0
#: a worker count that stayed the same this long has settled (the harness's SETTLED_S, SETTLED_EQUAL_S)
SETTLED_S, SETTLED_EQUAL_S = 3.0, 1.2
ORPHAN_S = 3.0
#: growth of the master's fds / threads that is a leak after a signal sequence (harness.run.faults)
FD_GROWTH, THREAD_GROWTH = 8, 2


def launch_fault(fault, target):
    """Before the start: the stale socket file, or the busy port. Returns what to close afterwards."""
    name = fault.get("name", "")
    if name == "stale-uds":
        if target["kind"] != "uds" or not hasattr(socket, "AF_UNIX"):
            cannot_run("stale-uds needs a UDS target and AF_UNIX")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(target["path"])
        sock.close()  # the file stays, nobody listens: a stale socket file
        say(
            "left a stale socket file at %s (bound, never listening, closed), as the harness did"
            % target["path"]
        )
        return None
    if name == "port-in-use" and target["kind"] == "tcp":
        family = socket.AF_INET6 if ":" in target["host"] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((target["host"], int(target["port"])))
        sock.listen(8)
        say("holding %s:%s before the start, as the harness did" % (target["host"], target["port"]))
        return sock
    return None


def answered_since(target, workers, seconds, stop_when):
    """Bursts for up to `seconds`: {pid: count} of the pids that answered, live ones only at the end."""
    got = {"lock": threading.Lock(), "pids": {}, "status": {}, "errors": {}, "responses": 0}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        burst(target, max(8, 4 * workers), got)
        if stop_when(got):
            break
        time.sleep(0.1)
    return {int(p): n for p, n in got["pids"].items() if running(int(p))}


def reload_done(proc, target, workers, current):
    """After a reload signal: the new worker pids once every pid of `current` is gone and N new ones
    answered (the harness's evidence of one reload), or None at RECOVERY_S."""
    new = set()
    end = time.monotonic() + RECOVERY_S
    while time.monotonic() < end and proc.poll() is None:
        got = answered_since(
            target, workers, 1.0, lambda g: len({int(p) for p in g["pids"]} - current) >= workers
        )
        new |= {p for p in got if p not in current}
        new = {p for p in new if running(p)}
        if len(new) >= workers and not any(running(p) for p in current):
            return new
    return None


def settled_count(master, expected):
    """The master's live descendants once their number stopped moving: equal to `expected` and the same
    for SETTLED_EQUAL_S, or another number the same for SETTLED_S (the harness's settle rule), or what it is
    at RECOVERY_S; None where this OS does not say. Sampled before the master's resources, so that a
    draining worker's pipe is not taken for growth."""
    pids = descendants(master)
    if pids is None:
        return None
    changed, end = time.monotonic(), time.monotonic() + RECOVERY_S
    while time.monotonic() < end:
        time.sleep(0.1)  # polled: these are not our children
        now = descendants(master) or set()
        if now != pids:
            pids, changed = now, time.monotonic()
        elif time.monotonic() - changed >= (SETTLED_EQUAL_S if len(pids) == expected else SETTLED_S):
            break
    return len(pids)


def runtime_fault(fault, proc, target, seen, workers):
    """Inject the fault into a server whose N workers answered; (class, detail) of what followed."""
    name, arg = fault.get("name", ""), fault.get("arg", "")
    if sys.platform == "win32" and name != "kill-worker":
        return None, "%s needs POSIX signals; not injected on Windows" % name
    before = sorted(int(p) for p in seen["pids"])
    master = proc.pid
    if name == "kill-worker":
        victim = before[0]
        os.kill(victim, getattr(signal, "SIGKILL", signal.SIGTERM))
        say("SIGKILL worker %d" % victim)
        end = time.monotonic() + RECOVERY_S
        while time.monotonic() < end:
            if proc.poll() is not None:
                return (
                    "startup-failure",
                    "the master exited (code %s) after one worker was killed" % proc.returncode,
                )
            live = answered_since(target, workers, 2.0, lambda g: len(g["pids"]) >= workers)
            if len([p for p in live if p != victim]) >= workers:
                return "passed", "the killed worker was replaced: %d workers answer" % workers
        live = answered_since(target, workers, 2.0, lambda g: False)
        return "partial-workers", "%d/%d workers answered %.0fs after one was killed (not replaced)" % (
            len(live),
            workers,
            RECOVERY_S,
        )
    if name == "kill-workers":
        victims = before if arg == "all" else before[: int(arg or 1)]
        os.kill(master, signal.SIGSTOP)  # the master sees them die together (harness.run.faults)
        try:
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + 5
            while any(running(p) for p in victims) and time.monotonic() < end:
                time.sleep(0.02)
        finally:
            os.kill(master, signal.SIGCONT)
        say("SIGKILL %d worker(s) at once (master held with SIGSTOP): %s" % (len(victims), victims))
        live = answered_since(target, workers, SETTLE_S, lambda g: proc.poll() is not None)
        if proc.poll() is not None:
            return (
                "startup-failure",
                "the master exited (code %s) after its workers were killed" % proc.returncode,
            )
        live = [p for p in live if p not in victims]
        if len(live) > workers:
            return "excess-workers", "%d/%d workers after kill-workers:%s" % (len(live), workers, arg or 1)
        if len(live) < workers:
            return "partial-workers", "%d/%d workers after kill-workers:%s" % (len(live), workers, arg or 1)
        return "passed", "every killed worker was replaced: %d workers answer" % workers
    if name == "kill-master":
        os.kill(master, signal.SIGKILL)
        say("SIGKILL master %d" % master)
        end = time.monotonic() + ORPHAN_S  # the workers' parent-death watchers act within this (faults.py)
        orphans = [p for p in before if running(p)]
        while orphans and time.monotonic() < end:
            time.sleep(0.05)  # polled: these processes are not our children
            orphans = [p for p in orphans if running(p)]
        if orphans:
            live = answered_since(target, workers, 2.0, lambda g: bool(g["pids"]))
            if live:
                return "leak", "%d worker(s) outlived the killed master and still answered" % len(orphans)
        return "passed", "the workers left with their master"
    if name == "signal-master":
        sig = getattr(signal, "SIG" + arg, None)
        if sig is None:
            return None, "no signal SIG%s here" % arg
        first = resources(master)
        repeat, interval = int(fault.get("repeat", 1)), float(fault.get("interval", 1.0))
        expect = fault.get("expect", "")
        current, waited = set(before), []
        for i in range(repeat):
            sent = time.monotonic()
            os.kill(master, sig)
            if expect == "reload":
                # as the harness does: the next signal only once this reload is done (the signal would
                # otherwise land mid-reload, which is another sequence than the one recorded)
                new = reload_done(proc, target, workers, current)
                waited.append(time.monotonic() - sent)
                current = new or current
            answered_since(target, workers, interval if i < repeat - 1 else 2.0, lambda g: False)
        say(
            "SIG%s x %d to the master, %gs apart%s"
            % (arg, repeat, interval, " after each reload" if waited else "")
        )
        if waited:
            say(
                "each reload done (old workers gone, %d new ones answering) in at most %.1fs"
                % (workers, max(waited))
            )
        if proc.poll() is not None and expect not in ("stop", "quick-stop"):
            return "contract-violation", "SIG%s: the master exited (code %s)" % (arg, proc.returncode)
        live = answered_since(target, workers, RECOVERY_S, lambda g: len(g["pids"]) >= workers)
        expected = (
            workers + repeat
            if expect == "add"
            else max(1, workers - repeat)
            if expect == "remove"
            else workers
        )
        count = settled_count(master, expected)
        last = resources(master)
        if first and last:
            say(
                "master fds %d -> %d, threads %d -> %d (%s workers after the sequence; %d expected)"
                % (first[0], last[0], first[1], last[1], "?" if count is None else count, expected)
            )
            added = max(0, expected - workers)
            if last[0] - first[0] > FD_GROWTH + 4 * added or last[1] - first[1] > THREAD_GROWTH:
                return "leak", "master fds %d -> %d, threads %d -> %d after %d x %s" % (
                    first[0],
                    last[0],
                    first[1],
                    last[1],
                    repeat,
                    arg,
                )
        replaced = [p for p in before if not running(p)]
        if expect == "keep" and replaced:
            return "contract-violation", "%s: %d of %d workers replaced; expected kept" % (
                arg,
                len(replaced),
                len(before),
            )
        if expect == "reload" and len(replaced) < len(before):
            return "contract-violation", "%s: %d of %d workers replaced; expected reload" % (
                arg,
                len(replaced),
                len(before),
            )
        return "passed", "SIG%s x %d: as its contract (%s) says" % (arg, repeat, expect or "?")
    return None, "fault %s is not injected by repro.py: the server is only started and probed" % name


def verdict(seen, workers, exit_code):
    got = len(seen["pids"])
    bad = sum(n for code, n in seen["status"].items() if not 200 <= code < 300)
    if exit_code is not None and got < workers:
        return "startup-failure", "exited with code %s before %d worker pids answered (%d did)" % (
            exit_code,
            workers,
            got,
        )
    if seen["responses"] == 0:
        errors = ", ".join(sorted(seen["errors"])) or "no answer"
        return "not-serving", "alive but no request was answered (%s)" % errors
    if got < workers:
        note = "" if got else " (responses carry no x-worker-pid header)"
        return "partial-workers", "%d/%d worker pids answered%s" % (got, workers, note)
    if bad:
        return "request-errors", "%d of %d responses were not 2xx" % (bad, seen["responses"])
    return "passed", "all %d worker pids answered" % workers


def _interrupted(signum, frame):
    raise SystemExit("repro: interrupted by signal %d; stopping the server" % signum)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", help="interpreter of an env built from requirements.txt")
    ap.add_argument("--deadline", type=float, default=CONFIG["deadline_s"], help="seconds to wait")
    ap.add_argument("--workers", type=int, default=CONFIG["workers"], help="distinct worker pids to expect")
    ap.add_argument("--grace", type=float, default=10.0, help="seconds between the stop signal and SIGKILL")
    args = ap.parse_args()

    target = dict(CONFIG["target"])
    held = hold_fd(target)  # first: fd N must still be free
    tmp = tempfile.mkdtemp(prefix="repro-")
    run_dir = os.path.join(tmp, "run")
    os.makedirs(run_dir)
    env = server_env(args.python, run_dir)
    say("fresh run dir (for the original's HOME, TMP, events, UDS): %s" % run_dir)
    argv = resolve_argv(CONFIG["command"], args.python, run_dir)
    if target["kind"] == "uds":
        target["path"] = rooted(target["path"], run_dir)
    for a in argv:  # events files, UDS paths... in the fresh run dir need their directory
        if a.startswith(run_dir):
            os.makedirs(os.path.dirname(a), exist_ok=True)
    argv, env, target = remake_paths(argv, env, target, tmp)
    if target["kind"] == "tcp" and held is None:
        argv, target = retarget_port(argv, target)
    fault = CONFIG.get("fault") or {}
    blocker = launch_fault(fault, target)
    log_path = os.path.join(tmp, "server.log")
    recorded = CONFIG["recorded"]
    say(
        "recorded: %s %s (%s, Python %s)"
        % (recorded["failure_class"], recorded["signature"], recorded["platform"], recorded["python"])
    )
    say("command: " + subprocess.list2cmdline(argv))
    with open(log_path, "wb") as log:
        proc = start(argv, env, log, target)
    where = target.get("path") or "%s:%s" % (target["host"], target["port"])
    say(
        "server pid %d; probing %s for %d worker pids, deadline %.0fs"
        % (proc.pid, where, args.workers, args.deadline)
    )
    seen = {"lock": threading.Lock(), "pids": {}, "status": {}, "errors": {}, "responses": 0}
    exit_code = None
    started = time.monotonic()
    deadline = started + args.deadline
    children, gone, wrong, judged = set(), set(), "", None
    exit_code = None
    # the server runs in a session of its own, out of reach of whoever ends this script: a SIGTERM (a
    # test's timeout, a CI job cancelled) goes through the `finally` below, which stops the server's group
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _interrupted)
    try:
        while time.monotonic() < deadline:
            exit_code = proc.poll()
            if exit_code is not None or len(seen["pids"]) >= args.workers:
                break
            burst(target, max(8, 4 * args.workers), seen)
            kids = descendants(proc.pid)
            children.update(kids or ())
            quiet = time.monotonic() - started > 5 and not seen["responses"]
            if quiet and len(children) > 4 * args.workers + 2:
                break  # worker processes keep coming and going and none serves: a respawn loop
            if quiet and not wrong:
                found = listeners({proc.pid} | (kids or set()))
                wrong = elsewhere(found, target) if found else ""
                if wrong:
                    break
            time.sleep(0.1)
        exit_code = proc.poll()
        still = descendants(proc.pid) if exit_code is None else None
        gone = children - still if still is not None else set()  # worker processes that died meanwhile
        if exit_code is None and len(seen["pids"]) >= args.workers and fault.get("name"):
            judged = runtime_fault(fault, proc, target, seen, args.workers)
            exit_code = proc.poll() if fault.get("name") != "kill-master" else None
    finally:
        alive = exit_code is None or (fault.get("name") == "kill-master" and group_alive(proc.pid))
        how = stop(proc, args.grace) if alive else "exited by itself (code %s)" % exit_code
        if held is not None:
            held.close()
        if blocker is not None:
            blocker.close()
    left = target["kind"] == "uds" and os.path.exists(target["path"])
    pids = ", ".join("%s x%d" % kv for kv in sorted(seen["pids"].items()))
    say("worker pids that answered: %s" % (pids or "none"))
    say("responses: %d, status: %s, connect errors: %s" % (seen["responses"], seen["status"], seen["errors"]))
    say("server: %s" % how)
    with open(log_path, "rb") as fh:
        tail = fh.read().decode("utf-8", "replace").splitlines()[-30:]
    if tail:
        print("---- server output (tail) ----")
        print("\n".join(tail))
        print("------------------------------")
    shutil.rmtree(tmp, ignore_errors=True)
    cls, detail = verdict(seen, args.workers, exit_code)
    if judged is not None:
        if judged[0] is None:
            say(judged[1])
        else:
            cls, detail = judged
    elif cls == "not-serving" and len(children) > 4 * args.workers + 2:
        cls, detail = (
            "respawn-loop",
            "%d distinct worker processes came and went; none served" % len(children),
        )
    elif cls in ("not-serving", "partial-workers") and wrong:
        cls, detail = "wrong-listener", wrong
    elif cls == "not-serving" and len(gone) >= args.workers:
        cls, detail = (
            "startup-failure",
            "%d worker processes exited before any answered and none was replaced" % (len(gone)),
        )
    if cls == "passed" and left:
        cls, detail = "leak", "the socket file %s survived the stop" % target["path"]
    print("VERDICT: %s: %s" % (cls, detail), flush=True)
    same = "REPRODUCED" if cls == recorded["failure_class"] else "DIFFERENT from the record"
    print("%s (recorded: %s)" % (same, recorded["failure_class"]), flush=True)
    return 0 if cls == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
