"""`harness notify`: one GitHub issue per regressed release, opened once and updated after, against an HTTP
server on loopback that answers the three REST calls the command makes (list open issues, create, update)
the way api.github.com does; and its bad input."""

import http.server
import json
import os
import subprocess
import sys
import threading
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from tests._paths import ROOT


class _Repo:
    def __init__(self) -> None:
        self.issues: List[Dict[str, Any]] = [
            {"number": 7, "title": "unrelated", "body": "hello", "labels": []}
        ]
        self.calls: List[Tuple[str, str, Any]] = []
        self.label_refused = False


@pytest.fixture
def github() -> Iterator[Tuple[str, _Repo]]:
    repo = _Repo()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != "Bearer t0ken":
                self._answer(401, {"message": "Bad credentials"})
                return False
            return True

        def do_GET(self) -> None:
            repo.calls.append(("GET", self.path, None))
            if self._authorized():
                self._answer(200, [i for i in repo.issues if i.get("state", "open") == "open"])

        def do_POST(self) -> None:
            body = self._body()
            repo.calls.append(("POST", self.path, body))
            if not self._authorized():
                return
            if repo.label_refused and body.get("labels"):
                self._answer(422, {"message": "Validation Failed"})
                return
            issue = {"number": 100 + len(repo.issues), **body}
            repo.issues.append(issue)
            self._answer(201, issue)

        def do_PATCH(self) -> None:
            body = self._body()
            repo.calls.append(("PATCH", self.path, body))
            if self._authorized():
                number = int(self.path.rsplit("/", 1)[1])
                issue = next(i for i in repo.issues if i["number"] == number)
                issue.update(body)
                self._answer(200, issue)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", repo
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _notify(
    issues: Any, api: str, tmp_path: Any, token: str = "t0ken", repo: str = "o/r"
) -> subprocess.CompletedProcess:
    path = tmp_path / "issues.json"
    path.write_text(issues if isinstance(issues, str) else json.dumps(issues))
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"}
    if token:
        env["GITHUB_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "notify", str(path), "--repo", repo, "--api-url", api],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


ISSUE = {"key": "uvicorn==0.55.0", "title": "uvicorn 0.55.0: regressed in 1 cell(s)", "body": "cells v1",
         "labels": ["release-regression"]}  # fmt: skip


def test_one_issue_per_release_opened_then_updated(github: Tuple[str, _Repo], tmp_path: Any) -> None:
    api, repo = github
    proc = _notify([ISSUE], api, tmp_path)
    assert proc.returncode == 0 and "opened issue #101" in proc.stdout, proc.stderr
    created = repo.issues[-1]
    assert created["labels"] == ["release-regression"]
    assert "<!-- asgi-workers-harness release: uvicorn==0.55.0 -->" in created["body"]
    # the next run of the same release (another OS finished, say) updates that issue, never a second one
    proc = _notify([{**ISSUE, "body": "cells v2"}], api, tmp_path)
    assert proc.returncode == 0 and "updated issue #101" in proc.stdout, proc.stderr
    assert len(repo.issues) == 2 and repo.issues[-1]["body"].endswith("cells v2")
    assert [c[0] for c in repo.calls] == ["GET", "POST", "GET", "PATCH"]
    assert repo.calls[-1][1] == "/repos/o/r/issues/101"
    # nothing regressed: no call at all
    repo.calls.clear()
    proc = _notify([], api, tmp_path, token="")
    assert proc.returncode == 0 and "no issue to open" in proc.stdout and repo.calls == []


def test_a_label_the_repo_refuses_still_opens_the_issue(github: Tuple[str, _Repo], tmp_path: Any) -> None:
    api, repo = github
    repo.label_refused = True
    proc = _notify([ISSUE], api, tmp_path)
    assert proc.returncode == 0 and "opened issue" in proc.stdout, proc.stderr
    assert [c[0] for c in repo.calls] == ["GET", "POST", "POST"] and "labels" not in repo.calls[-1][2]


@pytest.mark.parametrize(
    ("issues", "kw", "code", "message"),
    [
        (
            [ISSUE],
            {"token": "wrong"},
            1,
            "GitHub answered HTTP 401 to GET /issues?state=open&per_page=100&page=1: Bad credentials",
        ),
        ([ISSUE], {"token": ""}, 2, "GITHUB_TOKEN is not set"),
        ("[{", {}, 1, "unreadable issues file"),
        ([{"title": "x"}], {}, 1, "not a list of issues"),
        ([ISSUE], {"repo": "no-slash"}, 2, "--repo expects OWNER/NAME"),
    ],
)
def test_bad_input_is_one_line(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    github: Tuple[str, _Repo], tmp_path: Any, issues: Any, kw: Dict[str, str], code: int, message: str
) -> None:
    api, repo = github
    proc = _notify(issues, api, tmp_path, **kw)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and len(lines) == 1 and message in lines[0], proc.stderr
    assert len(repo.issues) == 1  # nothing was opened


def test_github_unreachable_is_one_line(tmp_path: Any) -> None:
    proc = _notify([ISSUE], "http://127.0.0.1:9", tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "GitHub is unreachable" in lines[0], proc.stderr
