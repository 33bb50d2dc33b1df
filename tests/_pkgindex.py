"""A real package index on loopback for tests: PEP 503 HTML and PEP 691 JSON simple API pages, served by
http.server from this process, with real wheels that pip and uv install.

* wheel(dist, version, files) -> (filename, bytes): a real pure-Python wheel (METADATA, WHEEL, RECORD with
  hashes) holding `files` ({"pkg/__init__.py": b"..."}) - what a `python -m build` of a tiny project gives
* PackageIndex - the index's content: add(dist, filename, data, yanked=None), listed_only (PEP 700
  `versions` without files: an upload under way), mode ("ok", "html-only", "500", "bad-json") and the
  paths it was asked for; serve() -> a context manager yielding the simple API's base URL

The index answers JSON or HTML by content negotiation as PyPI does, and 404 for unknown projects.
"""

import base64
import contextlib
import hashlib
import http.server
import io
import json
import threading
import zipfile
from typing import Any, Dict, Iterator, List, Optional, Tuple


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def wheel(
    dist: str, version: str, files: Dict[str, bytes], requires: Tuple[str, ...] = ()
) -> Tuple[str, bytes]:
    """A real, installable pure-Python wheel of `dist` at `version` holding `files`."""
    stem = dist.replace("-", "_")
    info = f"{stem}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    content = dict(files)
    content[f"{info}/METADATA"] = meta.encode()
    content[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for name, data in content.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    content[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in content.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return f"{stem}-{version}-py3-none-any.whl", buf.getvalue()


class PackageIndex:
    """The index's content and how it misbehaves (`mode`: ok, html-only, 500, bad-json)."""

    def __init__(self) -> None:
        # project -> filename -> (data, yanked reason or None)
        self.projects: Dict[str, Dict[str, Tuple[bytes, Optional[str]]]] = {}
        self.listed_only: Dict[str, List[str]] = {}
        self.mode = "ok"
        self.requests: List[str] = []

    def add(self, dist: str, filename: str, data: bytes, yanked: Optional[str] = None) -> None:
        self.projects.setdefault(_canonical(dist), {})[filename] = (data, yanked)

    def _file(self, name: str) -> Optional[bytes]:
        for files in self.projects.values():
            if name in files:
                return files[name][0]
        return None

    def project_json(self, project: str, base: str) -> bytes:
        files = []
        for filename, (data, yanked) in sorted(self.projects.get(project, {}).items()):
            files.append({
                "filename": filename,
                "url": f"{base}/files/{filename}",
                "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
                "requires-python": ">=3.7",
                "yanked": yanked if yanked is not None else False,
            })  # fmt: skip
        versions = {f["filename"].split("-")[1] for f in files} | set(self.listed_only.get(project, ()))
        body = {"meta": {"api-version": "1.1"}, "name": project, "files": files, "versions": sorted(versions)}
        return json.dumps(body).encode()

    def project_html(self, project: str, base: str) -> bytes:
        rows = []
        for filename, (data, yanked) in sorted(self.projects.get(project, {}).items()):
            yank = f' data-yanked="{yanked}"' if yanked is not None else ""
            sha = hashlib.sha256(data).hexdigest()
            rows.append(
                f'<a href="{base}/files/{filename}#sha256={sha}" data-requires-python="&gt;=3.7"{yank}>'
                f"{filename}</a><br/>"
            )
        return ("<!DOCTYPE html><html><body>" + "\n".join(rows) + "</body></html>").encode()

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on 127.0.0.1 (a free port) until the block ends; yields ".../simple/"."""
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            head_only = False

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not self.head_only:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # uv asks for a file's headers (range support) before it fetches it
                self.head_only = True
                try:
                    self.do_GET()
                finally:
                    self.head_only = False

            def do_GET(self) -> None:
                state.requests.append(self.path)
                base = f"http://127.0.0.1:{self.server.server_address[1]}"
                if state.mode == "500":
                    self._send(500, b"oops", "text/plain")
                    return
                if self.path.startswith("/files/"):
                    data = state._file(self.path[7:])
                    if data is not None:
                        self._send(200, data, "application/octet-stream")
                        return
                parts = self.path.split("?")[0].strip("/").split("/")
                project = parts[1] if len(parts) == 2 and parts[0] == "simple" else ""
                if project not in state.projects and project not in state.listed_only:
                    self._send(404, b"not found", "text/plain")
                    return
                wants_json = "application/vnd.pypi.simple.v1+json" in (self.headers.get("Accept") or "")
                if state.mode == "bad-json":
                    self._send(200, b'{"files": [', "application/vnd.pypi.simple.v1+json")
                elif wants_json and state.mode != "html-only":
                    self._send(200, state.project_json(project, base), "application/vnd.pypi.simple.v1+json")
                else:
                    self._send(200, state.project_html(project, base), "text/html")

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
