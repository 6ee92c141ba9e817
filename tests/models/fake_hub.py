"""A local server that speaks the part of the Hugging Face hub protocol that file downloads use.

Two HTTP servers on 127.0.0.1, like the real hub and its CDN (different origins):

* the hub answers ``HEAD|GET /<repo>/resolve/<revision>/<file>`` with a 302 to the CDN and the
  headers ``huggingface_hub`` reads from it: ``X-Repo-Commit`` (the resolved commit),
  ``X-Linked-Etag`` (an LFS file's sha256), ``X-Linked-Size`` and ``ETag`` (the git blob id); an
  unknown revision gets 404 with ``X-Error-Code: RevisionNotFound``, an unknown file
  ``EntryNotFound``, an unknown repository ``RepoNotFound``;
* the CDN serves the bytes with ``Content-Length`` and ``Range: bytes=N-`` (206 + ``Content-Range``).

Faults to inject: ``corrupt`` (serve other bytes than the sha256 announced), ``cut_after`` (the
next GET sends that many body bytes, then closes the connection), ``stall_after`` (the next GET
sends that many bytes, then waits until :meth:`FakeHub.release` or the server stops).
Every request is recorded in :attr:`FakeHub.requests`.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    repo_id: str
    filename: str
    content: bytes
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    branches: dict[str, str] = field(default_factory=dict)
    corrupt: bool = False
    cut_after: int | None = None
    stall_after: int | None = None
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.branches = {"main": self.commit, **self.branches}
        self.sha256 = hashlib.sha256(self.content).hexdigest()
        self.git_oid = hashlib.sha1(b"blob %d\0" % len(self.content) + self.content).hexdigest()
        self._release = threading.Event()
        self._servers: list[ThreadingHTTPServer] = []

    # -- lifecycle ------------------------------------------------------------------------------
    @contextmanager
    def running(self) -> Iterator[FakeHub]:
        hub = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("hub"))
        cdn = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("cdn"))
        hub.daemon_threads = cdn.daemon_threads = True
        self._servers = [hub, cdn]
        threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in self._servers
        ]
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self._release.set()
            for s in self._servers:
                s.shutdown()
                s.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def release(self) -> None:
        self._release.set()

    def served(self, server: str, method: str = "GET") -> list[Request]:
        return [r for r in self.requests if r.server == server and r.method == method]

    # -- the protocol ---------------------------------------------------------------------------
    def _body(self) -> bytes:
        if not self.corrupt:
            return self.content
        return bytes(b ^ 0xFF for b in self.content[:64]) + self.content[64:]

    def _handler(self, server: str) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def _answer(self, *, send_body: bool) -> None:
                fake.requests.append(Request(server, self.command, self.path, self.headers.get("Range")))
                if server == "hub":
                    self._resolve()
                else:
                    self._blob(send_body=send_body)

            def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _resolve(self) -> None:
                match = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.path)
                if match is None or match["repo"] != fake.repo_id:
                    self._error(404, "RepoNotFound", "Repository not found")
                    return
                rev = match["rev"]
                commit = fake.branches.get(rev) or (rev if rev in fake.branches.values() else None)
                if commit is None:
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                    return
                if match["file"] != fake.filename:
                    self._error(404, "EntryNotFound", "Entry not found", commit)
                    return
                self.send_response(302)
                self.send_header("Location", f"{fake.cdn}/lfs/{fake.sha256}?signature=fake")
                self.send_header("X-Repo-Commit", commit)
                self.send_header("X-Linked-Etag", f'"{fake.sha256}"')
                self.send_header("X-Linked-Size", str(len(fake.content)))
                self.send_header("ETag", f'"{fake.git_oid}"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _blob(self, *, send_body: bool) -> None:
                body = fake._body()
                start = 0
                ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if ranged:
                    start = int(ranged[1])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("ETag", f'"{fake.sha256}"')
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not send_body:
                    return
                rest = body[start:]
                if fake.cut_after is not None:
                    limit, fake.cut_after = fake.cut_after, None
                    self.wfile.write(rest[:limit])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if fake.stall_after is not None:
                    limit, fake.stall_after = fake.stall_after, None
                    self.wfile.write(rest[:limit])
                    self.wfile.flush()
                    fake._release.wait(timeout=60)
                    self.close_connection = True
                    return
                self.wfile.write(rest)

        return Handler
