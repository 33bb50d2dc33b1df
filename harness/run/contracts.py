"""Signal contracts: what a server documents it does when its master gets a signal, and how the harness
checks it (`--fault signal-master:SIG`).

The vocabulary of expectations (EXPECTS), one per (server, version range, signal):

* reload - graceful reload: every worker is replaced by a new one, the master and its listener stay, no
  request is dropped, N workers afterwards (gunicorn HUP, uvicorn >= 0.30 HUP, granian HUP)
* keep - the workers keep running (the same pids), nothing is dropped (gunicorn USR1: reopen the log
  files; gunicorn WINCH when not daemonized: ignored)
* add / remove - one worker more / less per signal, the others kept (gunicorn and uvicorn TTIN / TTOU;
  never below one worker)
* stop - graceful stop: the master exits 0 and leaves no worker behind (TERM)
* quick-stop - the master exits at once and leaves no worker behind, any exit code (gunicorn QUIT / INT)

Adapters declare theirs as SIGNAL_CONTRACTS: ((first_version, {SIG: expect}), ...), newest range first;
the first range whose first_version <= the installed version applies ("" = every version). A signal that
range does not name is not documented: the run is `unsupported` with the reason (nothing is sent).

* SIGNALS - the signal names `signal-master:` takes (without "SIG")
* contract_for(adapter, version, sig) -> Contract, or Unsupported-style reason (str)
* expected_workers(expect, workers, repeat) - the live worker count the contract leaves
"""

import dataclasses
from typing import Dict, Optional, Tuple, Union

from harness.adapters._base import PREFORK
from harness.adapters._versions import at_least

SIGNALS: Tuple[str, ...] = ("HUP", "USR1", "USR2", "TTIN", "TTOU", "WINCH", "QUIT", "INT", "TERM")

EXPECTS: Dict[str, str] = {
    "reload": "every worker replaced by a new one, the listener kept, no request dropped",
    "keep": "the same workers keep running, no request dropped",
    "add": "one worker more per signal, the others kept",
    "remove": "one worker less per signal (never below one), the others kept",
    "stop": "the master exits 0 and leaves no worker behind",
    "quick-stop": "the master exits at once and leaves no worker behind",
}

#: the contracts that end the server: the signal is sent once whatever --fault-repeat says
STOPPING = ("stop", "quick-stop")

Table = Tuple[Tuple[str, Dict[str, str]], ...]


@dataclasses.dataclass(frozen=True)
class Contract:
    signal: str  # "HUP"
    expect: str  # a key of EXPECTS
    source: str  # where it is documented ("gunicorn docs: signals")

    @property
    def text(self) -> str:
        return EXPECTS[self.expect]


def contract_for(adapter: object, version: str, sig: str) -> Union[Contract, str]:
    """The Contract `adapter` declares for SIG at `version`, else the one-line reason there is none."""
    name = str(getattr(adapter, "name", "?"))
    table: Table = getattr(adapter, "SIGNAL_CONTRACTS", ())
    source = str(getattr(adapter, "SIGNAL_SOURCE", "") or name)
    for first, signals in table:
        if not first or not version or at_least(version, first):
            expect = signals.get(sig)
            if expect is None:
                shown = f"{name} {version}".strip()
                return f"{shown} documents no behaviour for SIG{sig} (the harness has no contract to check)"
            assert expect in EXPECTS, (name, sig, expect)
            return Contract(sig, expect, source)
    shown = f"{name} {version}".strip()
    return f"{shown} documents no signal behaviour the harness can check (no contract for SIG{sig})"


def expected_workers(expect: str, workers: int, repeat: int) -> Optional[int]:
    """The live workers the contract leaves after `repeat` signals (None: the master is gone)."""
    if expect in STOPPING:
        return None
    if expect == "add":
        return workers + repeat
    if expect == "remove":
        return max(1, workers - repeat)
    return workers


__all__ = ["EXPECTS", "PREFORK", "SIGNALS", "STOPPING", "Contract", "contract_for", "expected_workers"]
