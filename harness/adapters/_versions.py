"""Version parsing and comparison for adapters: stdlib only, no `packaging`.

Adapters pick flags by the installed server version. Release strings of the servers we drive are
plain `X.Y.Z` with the occasional pre/post/dev suffix (`0.14.0`, `1.0.0rc1`, `23.0.0.post1`); this
module compares the numeric release part and treats a pre-release as older than its release, which
is all flag selection needs.

* parse(text) -> Version - raises ValueError with a one-line message for text that is not a version
* at_least(installed, minimum) / below(installed, bound) - the comparisons adapters use
"""

import re
from typing import NamedTuple, Tuple

_VERSION_RE = re.compile(
    r"^\s*v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre>a|b|rc|alpha|beta|c|dev)[-_.]?(?P<pren>\d*))?"
    r"(?:[-_.]?post[-_.]?(?P<post>\d*))?"
    r"(?:\+[a-z0-9.]+)?\s*$",
    re.IGNORECASE,
)

# rank of a pre-release tag against the final release (0 = final)
_PRE_RANK = {"dev": -4, "a": -3, "alpha": -3, "b": -2, "beta": -2, "c": -1, "rc": -1}


class Version(NamedTuple):
    """A comparable version: release padded to 3 numbers, then (pre rank, pre number, post number)."""

    release: Tuple[int, ...]
    pre: Tuple[int, int]
    post: int

    def __str__(self) -> str:
        return ".".join(str(n) for n in self.release)


def parse(text: str) -> Version:
    """Parse `0.14.0`, `1.0.0rc1`, `23.0.0.post1` into a Version; ValueError if it is not one."""
    match = _VERSION_RE.match(text or "")
    if match is None:
        raise ValueError(f"not a version: {text!r}")
    release = tuple(int(n) for n in match.group("release").split("."))
    while len(release) < 3:
        release = (*release, 0)
    # trailing zeros beyond three places do not change the order: 1.0.0.0 == 1.0.0
    while len(release) > 3 and release[-1] == 0:
        release = release[:-1]
    pre_tag = (match.group("pre") or "").lower()
    pre = (_PRE_RANK[pre_tag], int(match.group("pren") or 0)) if pre_tag else (0, 0)
    post_text = match.group("post")
    post = int(post_text) if post_text else 0
    return Version(release, pre, post)


def at_least(installed: str, minimum: str) -> bool:
    """True when `installed` >= `minimum`. An empty installed version counts as the newest."""
    if not installed:
        return True
    return parse(installed) >= parse(minimum)


def below(installed: str, bound: str) -> bool:
    """True when `installed` < `bound`. An empty installed version counts as the newest."""
    return not at_least(installed, bound)


__all__ = ["Version", "at_least", "below", "parse"]
