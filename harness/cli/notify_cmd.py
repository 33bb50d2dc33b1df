"""`harness notify ISSUES.json --repo OWNER/NAME`: open or update one GitHub issue per regressed release.

ISSUES.json is what `harness publish --issues` wrote. For each issue the open issues of the repository
are searched for its marker (harness.cli.publish_cmd.MARKER, in the body): found, that issue's title and
body are replaced (PATCH); not found, a new one is opened (POST, with the label; again without it when
the label cannot be set). The GitHub REST API at --api-url (default $GITHUB_API_URL, else
https://api.github.com), authenticated with $GITHUB_TOKEN (a workflow's token needs `issues: write`).
An empty list does nothing. Errors are one line (HTTP status and GitHub's message), never a traceback.
"""

import argparse
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any, Dict, List, Optional

from harness.cli.publish_cmd import MARKER
from harness.model.errors import HarnessError, UsageError

TIMEOUT_S = 30.0
#: open issues read to find an existing one (100 per page)
MAX_PAGES = 10


def add_parser(sub: Any) -> None:
    p = sub.add_parser("notify", help="open or update one GitHub issue per regressed release")
    p.add_argument("issues", metavar="ISSUES.json", help="written by `harness publish --issues`")
    p.add_argument("--repo", required=True, metavar="OWNER/NAME")
    p.add_argument("--api-url", default="", metavar="URL", help="default: $GITHUB_API_URL or api.github.com")
    p.set_defaults(func=run)


class _Api:
    def __init__(self, base: str, repo: str, token: str) -> None:
        self.base, self.repo, self.token = base.rstrip("/"), repo, token

    def call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        url = f"{self.base}/repos/{self.repo}{path}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": "application/vnd.github+json", "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "asgi-workers-harness",
            **({"Content-Type": "application/json"} if data is not None else {})})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read().decode("utf-8", "replace")).get("message", "")
            except (ValueError, AttributeError, OSError):
                message = ""
            raise HarnessError(
                f"GitHub answered HTTP {exc.code} to {method} {path}: {message}".rstrip(": ")
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise HarnessError(
                f"GitHub is unreachable ({self.base}): {getattr(exc, 'reason', exc)}"
            ) from None
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            raise HarnessError(f"GitHub sent unreadable JSON to {method} {path}") from None


def _load(path: str) -> List[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise HarnessError(f"{path}: unreadable issues file: {exc}") from None
    ok = isinstance(data, list) and all(
        isinstance(i, dict) and all(isinstance(i.get(k), str) for k in ("key", "title", "body")) for i in data
    )
    if not ok:
        raise HarnessError(
            f"{path}: not a list of issues (key, title, body) as `harness publish --issues` writes"
        )
    issues: List[Dict[str, Any]] = data
    return issues


def notify(issues: List[Dict[str, Any]], api: _Api, out: IO[str]) -> List[int]:
    """Open or update each issue; returns their numbers."""
    if not issues:
        out.write("no regression: no issue to open\n")
        return []
    existing: Dict[str, int] = {}
    for page in range(1, MAX_PAGES + 1):
        listed = api.call("GET", f"/issues?state=open&per_page=100&page={page}")
        if not isinstance(listed, list):
            raise HarnessError("GitHub sent something else than a list of issues")
        for issue in listed:
            body = str(issue.get("body") or "") if isinstance(issue, dict) else ""
            for m in re.finditer(r"<!-- asgi-workers-harness release: (\S+) -->", body):
                existing.setdefault(m.group(1), int(issue.get("number", 0)))
        if len(listed) < 100:
            break
    numbers = []
    for issue in issues:
        key = issue["key"]
        body = (
            issue["body"]
            if MARKER.format(key=key) in issue["body"]
            else MARKER.format(key=key) + "\n" + issue["body"]
        )
        number = existing.get(key)
        if number:
            api.call("PATCH", f"/issues/{number}", {"title": issue["title"], "body": body})
            out.write(f"updated issue #{number}: {issue['title']}\n")
        else:
            labels = [str(x) for x in issue.get("labels") or []]
            try:
                made = api.call("POST", "/issues", {"title": issue["title"], "body": body, "labels": labels})
            except HarnessError as exc:
                if not labels or ("HTTP 422" not in str(exc) and "HTTP 403" not in str(exc)):
                    raise
                made = api.call("POST", "/issues", {"title": issue["title"], "body": body})
            number = int((made or {}).get("number", 0))
            out.write(f"opened issue #{number}: {issue['title']}\n")
        numbers.append(number)
    return numbers


def run(args: argparse.Namespace, out: Optional[IO[str]] = None) -> int:
    import sys  # noqa: PLC0415

    if not re.match(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", args.repo):
        raise UsageError(f"--repo expects OWNER/NAME, got {args.repo!r}")
    base = args.api_url or os.environ.get("GITHUB_API_URL") or "https://api.github.com"
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise UsageError(f"--api-url: not an http(s) URL: {base!r}")
    issues = _load(args.issues)
    token = os.environ.get("GITHUB_TOKEN", "")
    if issues and not token:
        raise UsageError("GITHUB_TOKEN is not set (the workflow passes secrets.GITHUB_TOKEN)")
    notify(issues, _Api(base, args.repo, token), out or sys.stdout)
    return 0


__all__ = ["add_parser", "notify", "run"]
