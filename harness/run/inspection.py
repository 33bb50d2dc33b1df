"""Inspection with psutil: who is in a server's process tree, where it listens, what survived its stop.

* tree_pids(root_pid) -> [pid] - root first, then its descendants ([] when root is gone)
* role_of(cmdline, is_root, parent_cmdline=()) -> "master" | "worker" | "helper" - helpers are
  multiprocessing's resource_tracker / forkserver / semaphore_tracker, recognised by their command line
  (`from multiprocessing.resource_tracker import main; main(fd)` and friends); a child of the forkserver
  carries the forkserver's command line but is a worker
* listening_sockets(pids) -> [{pid, family, address, port, path}] - TCP sockets in LISTEN state and
  listening AF_UNIX sockets held by `pids` (a socket shared by several processes appears once per pid)
* snapshot(root_pid, phase) -> {phase, t (time.monotonic()), processes: [{pid, ppid, name, cmdline,
  role}], listeners: [...]}; processes(root_pid) -> the processes part alone
* worker_pids(root_pid) -> {pid} - the tree's workers now (for wait_ready's worker_pids: ~2-5 ms)
* find_leaks(pids, uds_paths, ports=()) -> {processes: [{pid, name, cmdline, status}], listeners:
  [...], uds: [path]} - of `pids` (e.g. every pid of the run's snapshots), those still running (a
  zombie counts only while its parent is one of `pids`: one adopted by init has exited and holds
  nothing); listeners still held by them, and - when `ports` are given - by ANY
  process on this machine on those TCP ports (a daemon that escaped the tree keeps the port: it is
  added to processes too); UDS paths that still exist. Reports only: cleaning up is the caller's call.
* discover_target(root_pid, asked) -> Optional[Target] - where the tree really listens. For asked.uds: that
  path if listened on, else (the wrong-listener case) the tree's TCP listener; for TCP: the asked port if
  non-zero and listened on, else the loopback listener held by the most processes of the tree.
  TargetFinder(root_pid, asked) is the same as a callable that walks the tree only when a listener
  appeared on the machine (or 0.25 s after its last walk): ~0.1 ms per call instead of 1-4 ms.

family is "AF_INET" | "AF_INET6" | "AF_UNIX"; address is "" for AF_UNIX, path is "" for TCP.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import psutil

from harness import _platform
from harness.run.readiness import Target

__all__ = [
    "HELPER_MARKERS",
    "TargetFinder",
    "discover_target",
    "find_leaks",
    "listening_sockets",
    "processes",
    "role_of",
    "snapshot",
    "tree_pids",
    "worker_pids",
]

#: command-line fragments of multiprocessing's helper processes (never workers).
HELPER_MARKERS = (
    "multiprocessing.resource_tracker",
    "multiprocessing.forkserver",
    "multiprocessing.semaphore_tracker",
)


def tree_pids(root_pid: int) -> List[int]:
    try:
        root = psutil.Process(root_pid)
        return [root_pid] + [p.pid for p in root.children(recursive=True)]
    except psutil.Error:
        return []


def role_of(cmdline: Sequence[str], is_root: bool, parent_cmdline: Sequence[str] = ()) -> str:
    """master (the root), helper, or worker.

    A process forked BY the forkserver keeps the forkserver's command line: a helper cmdline whose parent
    has the same helper cmdline is a worker (measured: `--start-method forkserver` workers)."""
    joined = " ".join(cmdline)
    if is_root:
        return "master"
    marker = next((m for m in HELPER_MARKERS if m in joined), None)
    if marker is None:
        return "worker"
    return "worker" if marker in " ".join(parent_cmdline) else "helper"


def _family_name(family: int) -> str:
    if family == socket.AF_INET6:
        return "AF_INET6"
    if family == socket.AF_INET:
        return "AF_INET"
    return "AF_UNIX"


def listening_sockets(pids: Iterable[int]) -> List[Dict[str, Any]]:
    pid_list = list(pids)
    found: List[Dict[str, Any]] = []
    seen: Set[Tuple[Any, ...]] = set()
    tcp = _platform.tcp_listeners(pid_list)
    if tcp is None:  # no fast path here: psutil, one process at a time
        tcp = []
        for pid in pid_list:
            try:
                conns = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.Error:
                continue
            tcp.extend(
                (pid, int(c.family), c.laddr.ip, c.laddr.port)
                for c in conns
                if c.status == psutil.CONN_LISTEN and c.laddr
            )
    for pid, family, ip, port in tcp:
        key = (pid, _family_name(family), ip, port)
        if key in seen:
            continue
        seen.add(key)
        found.append({"pid": pid, "family": key[1], "address": ip, "port": port, "path": ""})
    unix = _platform.unix_listeners(pid_list)
    if unix is None:  # no listening flag available: every bound unix socket with a path
        unix = []
        for pid in pid_list:
            try:
                conns = psutil.Process(pid).net_connections(kind="unix")
            except (psutil.Error, NotImplementedError):
                continue
            unix.extend((pid, str(c.laddr)) for c in conns if isinstance(c.laddr, str) and c.laddr)
    for pid, path in unix:
        key2 = (pid, "AF_UNIX", path)
        if key2 not in seen:
            seen.add(key2)
            found.append({"pid": pid, "family": "AF_UNIX", "address": "", "port": 0, "path": path})
    return found


def worker_pids(root_pid: int) -> Set[int]:
    """Pids of the tree's workers now (no listeners: cheap enough for wait_ready's worker_pids)."""
    return {p["pid"] for p in processes(root_pid) if p["role"] == "worker"}


def snapshot(root_pid: int, phase: str) -> Dict[str, Any]:
    t = time.monotonic()
    procs = processes(root_pid)
    listeners = listening_sockets([p["pid"] for p in procs])
    return {"phase": phase, "t": t, "processes": procs, "listeners": listeners}


def processes(root_pid: int) -> List[Dict[str, Any]]:
    """[{pid, ppid, name, cmdline, role}] of the tree, root first."""
    processes: List[Dict[str, Any]] = []
    for pid in tree_pids(root_pid):
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                processes.append({"pid": pid, "ppid": p.ppid(), "name": p.name(), "cmdline": p.cmdline()})
        except psutil.Error:
            continue
    cmdlines = {proc["pid"]: proc["cmdline"] for proc in processes}
    for proc in processes:
        proc["role"] = role_of(proc["cmdline"], proc["pid"] == root_pid, cmdlines.get(proc["ppid"], ()))
    return processes


def _describe(pid: int) -> Optional[Dict[str, Any]]:
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            try:
                cmdline = p.cmdline()
            except psutil.ZombieProcess:
                cmdline = []
            return {"pid": pid, "name": p.name(), "cmdline": cmdline, "status": p.status()}
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        return {"pid": pid, "name": "", "cmdline": [], "status": "unknown"}


def _adopted_zombie(info: Dict[str, Any], run_pids: Set[int]) -> bool:
    """A zombie whose parent is not one of the run's processes (init adopted it): it has exited and
    holds nothing; init just has not reaped it yet. A zombie of a live run process is still reported."""
    if info.get("status") != psutil.STATUS_ZOMBIE:
        return False
    try:
        return psutil.Process(int(info["pid"])).ppid() not in run_pids
    except psutil.Error:
        return True


def find_leaks(
    pids: Iterable[int], uds_paths: Iterable[str] = (), ports: Iterable[int] = ()
) -> Dict[str, List[Any]]:
    me = os.getpid()
    run_pids = set(pids)
    survivors: Dict[int, Dict[str, Any]] = {}
    for pid in sorted(run_pids):
        if pid == me:
            continue
        info = _describe(pid)
        if info is not None and not _adopted_zombie(info, run_pids):
            survivors[pid] = info
    listeners = listening_sockets(list(survivors))
    port_set = {int(p) for p in ports if p}
    if port_set:
        holders = _platform.tcp_listeners(None, port_set)
        if holders is None:
            try:
                conns = psutil.net_connections(kind="tcp")
            except psutil.Error:
                conns = []
            holders = [
                (c.pid, int(c.family), c.laddr.ip, c.laddr.port)
                for c in conns
                if c.status == psutil.CONN_LISTEN
                and c.laddr
                and c.laddr.port in port_set
                and c.pid is not None
            ]
        for pid, family, ip, port in holders:
            if pid == me:
                continue  # the harness holds it itself (bind=fd:N): not a leak of the server
            entry = {"pid": pid, "family": _family_name(family), "address": ip, "port": port, "path": ""}
            if entry not in listeners:
                listeners.append(entry)
            if pid not in survivors:
                info = _describe(pid)
                if info is not None and not _adopted_zombie(info, run_pids):
                    survivors[pid] = info
    uds = [path for path in uds_paths if path and os.path.lexists(path)]
    return {"processes": list(survivors.values()), "listeners": listeners, "uds": uds}


def discover_target(root_pid: int, asked: Target) -> Optional[Target]:
    listeners = listening_sockets(tree_pids(root_pid))
    if asked.uds and any(entry["path"] == asked.uds for entry in listeners):
        return asked
    counts: Dict[Any, int] = {}
    for entry in listeners:
        host = _loopback_for(entry)
        if host is None:
            continue
        if not asked.uds and asked.port and entry["port"] == asked.port:
            return Target(host=host, port=asked.port)
        counts[(host, entry["port"])] = counts.get((host, entry["port"]), 0) + 1
    if not counts:
        return None
    (host, port), _ = max(counts.items(), key=lambda kv: kv[1])
    return Target(host=host, port=port)


class TargetFinder:
    """discover_target(root_pid, asked) as a callable for wait_ready, with a cheap first step.

    Walking the tree costs 1-2 ms of CPU (psutil reads every /proc/PID/stat to find the children), and
    readiness asks again and again while an upstream server starts. The machine's listening sockets cost
    ~0.1 ms to list (harness._platform.listener_inodes), so the tree is walked only when a listener
    appeared that was not there at the last walk, or RESCAN_S after that walk (a listener that moved into
    the tree). Where listeners cannot be listed cheaply, every call walks."""

    RESCAN_S = 0.25

    def __init__(self, root_pid: int, asked: Target) -> None:
        self.root_pid = root_pid
        self.asked = asked
        self.walks = 0
        self._seen: Optional[frozenset[str]] = None
        self._walked_at = 0.0
        self._last: Optional[Target] = None

    def __call__(self) -> Optional[Target]:
        inodes = _platform.listener_inodes()
        now = time.monotonic()
        if (
            inodes is not None
            and self._seen is not None
            and inodes <= self._seen
            and now - self._walked_at < self.RESCAN_S
        ):
            return self._last
        self._last = discover_target(self.root_pid, self.asked)
        self._seen, self._walked_at = inodes, now
        self.walks += 1
        return self._last


def _loopback_for(entry: Dict[str, Any]) -> Optional[str]:
    """The loopback host that reaches a TCP listener (a wildcard bind through loopback); None if none."""
    if entry["family"] == "AF_UNIX":
        return None
    address = str(entry["address"])
    if address in ("0.0.0.0", "", "::"):
        return "::1" if entry["family"] == "AF_INET6" else "127.0.0.1"
    try:
        return address if ipaddress.ip_address(address).is_loopback else None
    except ValueError:
        return None
