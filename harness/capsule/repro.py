#!/usr/bin/env python3
"""Reproduce one harness record without the harness (stdlib only, Python 3.7+).

Starts the recorded server command in its own process group, probes it on loopback with bursts of
fresh connections until N distinct `x-worker-pid` values answered or the deadline passed, prints what
it saw and a verdict, then stops and kills the whole tree.

Exit status: 0 the server passed, 1 it failed, 2 the reproduction could not run.

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
    deadline = time.monotonic() + args.deadline
    try:
        while time.monotonic() < deadline:
            exit_code = proc.poll()
            if exit_code is not None or len(seen["pids"]) >= args.workers:
                break
            burst(target, max(8, 4 * args.workers), seen)
            time.sleep(0.1)
        exit_code = proc.poll()
    finally:
        how = stop(proc, args.grace) if exit_code is None else "exited by itself (code %s)" % exit_code
        if held is not None:
            held.close()
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
    print("VERDICT: %s: %s" % (cls, detail), flush=True)
    same = "REPRODUCED" if cls == recorded["failure_class"] else "DIFFERENT from the record"
    print("%s (recorded: %s)" % (same, recorded["failure_class"]), flush=True)
    return 0 if cls == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
