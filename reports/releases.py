"""The index of every release tested: one entry per release page, newest first, per server and platform.

* summarize(release_diff, ...) -> dict: one release's entry (JSON-able): what was compared, when, its page,
  the outcome counts in total and per platform (and per platform x python)
* merge_entries(existing, new) -> [dict]: the index after publishing `new` (an entry for the same
  distribution and version replaces the old one), newest first
* render_index(entries, generated_at="") -> str: the static page (no network resource)
"""

from typing import Any, Dict, List, Sequence, Tuple

from .merge import PLATFORM_NAMES, version_key
from .release import OUTCOMES, ReleaseDiff
from .render import _env

__all__ = ["merge_entries", "render_index", "summarize"]

#: the outcome counts the index shows in each platform cell
SHOWN = ("regressed", "fixed", "spurious-regressed", "still-broken", "inconclusive")


def summarize(
    release_diff: ReleaseDiff,
    *,
    distribution: str,
    server: str,
    version: str,
    previous: str,
    page: str,
    published_at: str,
) -> Dict[str, Any]:
    """One release's index entry."""
    totals = {name: 0 for name in OUTCOMES}
    platforms: Dict[str, Dict[str, int]] = {}
    pythons: Dict[str, Dict[str, int]] = {}
    for e in release_diff.entries:
        name = e.outcome
        totals[name] += 1
        plat = PLATFORM_NAMES.get(e.platform, e.platform or "?")
        platforms.setdefault(plat, {n: 0 for n in OUTCOMES})[name] += 1
        pythons.setdefault(f"{plat} {e.python}", {n: 0 for n in OUTCOMES})[name] += 1
    return {
        "distribution": distribution,
        "server": server,
        "version": version,
        "previous": previous,
        "page": page,
        "published_at": published_at,
        "totals": totals,
        "platforms": platforms,
        "pythons": pythons,
    }


def _key(entry: Dict[str, Any]) -> Tuple[str, str]:
    return str(entry.get("distribution", "")), str(entry.get("version", ""))


def merge_entries(existing: Sequence[Dict[str, Any]], new: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """`existing` with `new` added (same distribution + version: the new entry wins), newest first
    (published_at, then version)."""
    by_key = {_key(e): dict(e) for e in existing if isinstance(e, dict)}
    for e in new:
        by_key[_key(e)] = dict(e)
    return sorted(
        by_key.values(),
        key=lambda e: (str(e.get("published_at", "")), version_key(str(e.get("version", "")))),
        reverse=True,
    )


def render_index(entries: Sequence[Dict[str, Any]], *, generated_at: str = "") -> str:
    """The index page: per distribution (the one released last first), its releases newest first, a column per
    platform with the regressed / fixed (and other non-zero) counts, each release linking its page."""
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for e in entries:
        groups.setdefault(str(e.get("distribution", "?")), []).append(e)
    order = {"Linux": 0, "macOS": 1, "Windows": 2}
    sections = []
    # the distribution with the newest release first (entries come newest first)
    for dist, rows in groups.items():
        plats = sorted(
            {p for r in rows for p in (r.get("platforms") or {})}, key=lambda p: (order.get(p, 9), p)
        )
        sections.append((dist, rows, plats))
    latest = entries[0] if entries else None
    regressed = [e for e in entries if (e.get("totals") or {}).get("regressed")]
    return _env().get_template("releases_index.html").render(
        sections=sections, shown=SHOWN, latest=latest, regressed=regressed, generated_at=generated_at,
        n=len(entries),
    )  # fmt: skip
