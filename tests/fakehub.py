"""A fake Hugging Face Hub on 127.0.0.1, so the real ``datasets`` library can load hub ids offline.

``fake_hub(tmp_path, datasets={"org/name": {"train": table, "test": table}})`` writes each split as
``data/{split}-00000-of-00001.parquet`` (the Hub's own layout, from which ``datasets`` infers the splits), serves
the repos over HTTP from a ``ThreadingHTTPServer`` thread and points ``huggingface_hub`` and ``datasets`` at it.
The yielded :class:`FakeHub` keeps a log of the requests it answered (``hub.requests``), so a test can assert the
data really came through the hub.

Routes, as called by datasets 5.2.0 / huggingface_hub 2.4.0 for ``load_dataset(id, split=..., streaming=True)``
(found by reading their source and logging what this server receives):

1. ``HEAD /datasets/{repo}/resolve/main/README.md``: 404 ``EntryNotFound`` (no card), so ``datasets`` asks
2. ``GET /api/datasets/{repo}`` for the commit ``sha`` (also ``/api/datasets/{repo}/revision/{sha}`` later);
   the answer has ``id``, ``sha``, ``siblings``. An unknown repo is 401 ``X-Error-Code: RepoNotFound``, as on the
   Hub, and an unknown revision 404 ``RevisionNotFound``.
3. ``HEAD /datasets/{repo}/resolve/{sha}/{file}`` for ``{name}.py``, ``README.md``, ``.huggingface.yaml`` and
   ``dataset_infos.json``: 404 ``EntryNotFound`` unless the repo has them (``extra_files``). Existing files answer
   ``X-Repo-Commit``, ``ETag`` (+ ``X-Linked-Etag``/``X-Linked-Size`` for LFS files) and ``Content-Length``.
4. ``GET http://datasets-server.{host}/info?dataset=...`` (see below): 404, no dataset viewer export.
5. ``GET /api/datasets/{repo}/tree/{sha}/data`` then ``.../tree/{sha}`` with ``recursive=false&expand=false``:
   ``[{type, oid, size, path[, lfs]}]``, cursor-paginated through a ``Link: <...>; rel="next"`` header like the
   Hub (``page_size`` entries per page; ``HfFileSystem`` follows it).
6. ``GET /datasets/{repo}/resolve/{sha}/data/{split}-....parquet`` with ``Range: bytes=a-b``: 206 and the bytes
   (twice for the requested split; the first split's file is also read to infer the features).
``POST /api/datasets/{repo}/paths-info/{rev}`` (form ``paths``, ``expand``) is served too, though this flow does
not call it. A request no route knows is answered 404 and logged in ``hub.unrouted``: after a library upgrade,
check that list first.

``datasets`` derives the dataset viewer URL from ``HF_ENDPOINT`` by prefixing the host with ``datasets-server.``
(``http://datasets-server.127.0.0.1:PORT``, which resolves nowhere); the client transport below sends that host to
this server, which answers 404, so ``datasets`` reads the repo files as for a repo the viewer has not processed.

What has to be patched, and why (all restored on exit):

- ``HF_ENDPOINT`` is read at import time: ``huggingface_hub.constants.ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``
  and ``HF_URL_HOSTS``, ``huggingface_hub.utils._http._HUB_ORIGINS``, and ``datasets.config.HF_ENDPOINT`` and
  ``HUB_DATASETS_URL``. Setting the env var alone does nothing once the modules are imported.
- Offline mode is also frozen at import time, and ``tests/conftest.py`` sets ``HF_HUB_OFFLINE=1`` and
  ``HF_DATASETS_OFFLINE=1`` before anything is imported: ``huggingface_hub.constants.HF_HUB_OFFLINE`` (checked by
  the session's request hook) and ``datasets.config.HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` are set to False;
  the env vars are unset too.
- Cache and token paths are frozen at import time as well: ``HF_HOME``, ``HF_HUB_CACHE`` (+ legacy
  ``HUGGINGFACE_HUB_CACHE``), ``HF_ASSETS_CACHE``, ``HF_XET_CACHE``, ``HF_TOKEN_PATH``, ``HF_STORED_TOKENS_PATH``
  in ``huggingface_hub.constants`` and ``HF_CACHE_HOME``, ``HF_DATASETS_CACHE``, ``HF_MODULES_CACHE``,
  ``DOWNLOADED_DATASETS_PATH``, ``EXTRACTED_DATASETS_PATH`` in ``datasets.config`` point into a fresh tmp dir, so
  nothing is read from or written to the developer's cache and no real token is sent. ``HF_TOKEN`` is unset.
- ``datasets.config.HF_UPDATE_DOWNLOAD_COUNTS`` is set to False: it is a download-count ``HEAD`` to
  ``s3.amazonaws.com`` (not part of loading) that would otherwise be blocked on every load.
- The ``huggingface_hub`` HTTP client (``set_client_factory``; ``datasets`` and ``HfFileSystem`` use it for
  every request) gets a transport that connects only to this server; any other host raises
  :class:`HubEscapeError` and is recorded in ``hub.blocked``, and leaving ``fake_hub`` fails if anything was
  blocked (the libraries swallow some errors, so raising alone would not be loud enough).
- ``HfFileSystem``'s instance cache (fsspec caches instances and their directory listings) is cleared on entry
  and exit so no listing leaks between tests.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import mmap
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

LFS_SUFFIXES = (".parquet", ".arrow", ".zip", ".gz")  # stored through LFS on the Hub (``lfs`` in tree entries)
VIEWER_HOST_PREFIX = "datasets-server."


class HubEscapeError(RuntimeError):
    """A request under ``fake_hub`` went somewhere other than the fake hub (e.g. huggingface.co)."""


@dataclass(frozen=True)
class HubRequest:
    method: str
    host: str
    path: str  # unquoted, without the query string
    query: str
    status: int
    range: str | None = None


@dataclass
class RepoFile:
    """A served file; its hashes are computed once (every HEAD and tree listing reports them: hashing a big file per
    request cost the benchmarks' hub seconds of CPU per run)."""

    path: str
    data: bytes | mmap.mmap  # a map serves a big file from the page cache (bench/memory.py's 20M-row datasets)

    @functools.cached_property
    def oid(self) -> str:  # git blob id, as the Hub reports for every file
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)

    @property
    def etag(self) -> str:  # the Hub's ETag is the LFS sha256 for LFS files, the git blob id otherwise
        return self.sha256 if self.lfs else self.oid


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, RepoFile]
    sha: str = ""

    def __post_init__(self) -> None:
        if not self.sha:
            digest = hashlib.sha1(self.repo_id.encode())
            for path in sorted(self.files):
                digest.update(path.encode() + b"\0" + self.files[path].data)
            self.sha = digest.hexdigest()

    def dirs(self) -> set[str]:
        out: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return out

    def entry(self, path: str, expand: bool = False) -> dict[str, Any]:
        if path in self.files:
            f = self.files[path]
            item: dict[str, Any] = {"type": "file", "oid": f.oid, "size": len(f.data), "path": path}
            if f.lfs:
                item["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
        else:
            oid = hashlib.sha1(f"{self.sha}:{path}".encode()).hexdigest()
            item = {"type": "directory", "oid": oid, "size": 0, "path": path}
        if expand:
            item["lastCommit"] = {"id": self.sha, "title": "Upload dataset", "date": "2024-01-01T00:00:00.000Z"}
        return item

    def tree(self, directory: str, recursive: bool) -> list[str] | None:
        """Paths listed under ``directory`` (directories first, like the Hub), or None if it is not a directory."""
        if directory and directory not in self.dirs():
            return None
        prefix = f"{directory}/" if directory else ""
        below = [p for p in sorted(self.dirs() | set(self.files)) if p.startswith(prefix)]
        if not recursive:
            below = [p for p in below if "/" not in p[len(prefix) :]]
        dirs = self.dirs()
        return [p for p in below if p in dirs] + [p for p in below if p not in dirs]


def parquet_bytes(table: pa.Table, row_group_size: int | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size)
    return sink.getvalue().to_pybytes()


def make_repo(
    repo_id: str,
    splits: Mapping[str, pa.Table],
    root: Path,
    extra_files: Mapping[str, bytes] | None = None,
    row_group_size: int | None = None,
) -> FakeRepo:
    """Write each split as ``data/{split}-00000-of-00001.parquet`` under ``root/repo_id`` and describe the repo."""
    files: dict[str, RepoFile] = {}
    for split, table in splits.items():
        path = f"data/{split}-00000-of-00001.parquet"
        target = root / repo_id / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(parquet_bytes(table, row_group_size))
        files[path] = RepoFile(path, target.read_bytes())
    for path, data in (extra_files or {}).items():
        files[path] = RepoFile(path, data)
    return FakeRepo(repo_id, files)


_REPO = r"(?P<repo_id>[^/]+(?:/[^/]+)?)"
_ROUTES = [
    ("GET", re.compile(rf"^/api/datasets/{_REPO}(?:/revision/(?P<rev>[^/]+))?$"), "info"),
    ("GET", re.compile(rf"^/api/datasets/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"), "tree"),
    ("POST", re.compile(rf"^/api/datasets/{_REPO}/paths-info/(?P<rev>[^/]+)$"), "paths_info"),
    ("GET", re.compile(rf"^/datasets/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
    ("HEAD", re.compile(rf"^/datasets/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
]


class _Reply(Exception):  # noqa: N818 - a reply; route methods raise the error ones, never escapes route()
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}
        self.unrouted = False


def _hub_error(status: int, code: str, message: str) -> _Reply:
    return _Reply(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})


class FakeHub:
    """The server state: repos, the request log and the requests blocked on the client side."""

    def __init__(self, repos: Mapping[str, FakeRepo], page_size: int = 1000) -> None:
        self.repos = dict(repos)
        self.page_size = page_size
        self.requests: list[HubRequest] = []  # every request answered, in order
        self.blocked: list[str] = []  # client side: requests to any other host, refused
        self.unrouted: list[HubRequest] = []  # server side: requests no route here knows (answered 404)
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="fakehub", daemon=True
        )

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop the kept-alive connections too, so the hub is really gone."""
        self._server.shutdown()
        self._server.server_close()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    # ---- what tests ask -------------------------------------------------------------------------------------
    def downloaded(self, repo_id: str) -> list[str]:
        """Repo files whose bytes were served by a successful GET (200 or 206), in first-request order."""
        prefix = f"/datasets/{repo_id}/resolve/"
        out: list[str] = []
        for r in self.requests:
            if r.method == "GET" and r.status in (200, 206) and r.path.startswith(prefix):
                path = r.path[len(prefix) :].split("/", 1)[1]
                if path not in out:
                    out.append(path)
        return out

    # ---- routing --------------------------------------------------------------------------------------------
    def _repo(self, repo_id: str, rev: str) -> FakeRepo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise _hub_error(401, "RepoNotFound", "Repository not found")
        if unquote(rev) not in ("main", repo.sha):
            raise _hub_error(404, "RevisionNotFound", "Invalid rev id: " + unquote(rev))
        return repo

    def _info(self, repo_id: str, rev: str | None, **_: Any) -> _Reply:
        repo = self._repo(repo_id, rev or "main")
        body = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": repo.sha,
            "lastModified": "2024-01-01T00:00:00.000Z",
            "private": False,
            "gated": False,
            "disabled": False,
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "cardData": {},
            "siblings": [{"rfilename": path} for path in sorted(repo.files)],
        }
        return _Reply(200, body)

    def _tree(self, repo_id: str, rev: str, path: str | None, query: dict[str, list[str]], **_: Any) -> _Reply:
        repo = self._repo(repo_id, rev)
        directory = unquote(path or "").strip("/")
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        expand = query.get("expand", ["False"])[0].lower() == "true"
        paths = repo.tree(directory, recursive)
        if paths is None:
            raise _hub_error(404, "EntryNotFound", f"{directory} does not exist on {rev}")
        start = int(query.get("cursor", ["0"])[0])
        page = paths[start : start + self.page_size]
        headers = {}
        if start + self.page_size < len(paths):
            params = {"recursive": str(recursive), "expand": str(expand), "cursor": start + self.page_size}
            tail = f"/{path}" if path else ""
            headers["Link"] = (
                f'<{self.endpoint}/api/datasets/{repo_id}/tree/{rev}{tail}?{urlencode(params)}>; rel="next"'
            )
        return _Reply(200, [repo.entry(p, expand) for p in page], headers)

    def _paths_info(self, repo_id: str, rev: str, form: dict[str, list[str]], **_: Any) -> _Reply:
        repo = self._repo(repo_id, rev)
        expand = form.get("expand", ["False"])[0].lower() == "true"
        known = repo.dirs() | set(repo.files)
        wanted = [p.strip("/") for p in form.get("paths", [])]
        return _Reply(200, [repo.entry(p, expand) for p in wanted if p in known])

    def _resolve(self, repo_id: str, rev: str, path: str, method: str, range_header: str | None, **_: Any) -> _Reply:
        repo = self._repo(repo_id, rev)
        f = repo.files.get(unquote(path))
        if f is None:
            raise _Reply(
                404,
                "Entry not found",
                {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found", "X-Repo-Commit": repo.sha},
            )
        headers = {
            "X-Repo-Commit": repo.sha,
            "ETag": f'"{f.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(len(f.data))
        data = f.data
        if range_header and method == "GET":
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            size = len(data)
            if match is None or match.groups() == ("", ""):
                raise _Reply(416, b"", {"Content-Range": f"bytes */{size}"})
            first, last = match.groups()
            if first == "":  # suffix range: the last N bytes
                start, end = max(size - int(last), 0), size - 1
            else:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            if start >= size or start > end:
                raise _Reply(416, b"", {"Content-Range": f"bytes */{size}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return _Reply(206, data[start : end + 1], headers)
        return _Reply(200, data, headers)

    def route(self, method: str, host: str, path: str, query: str, body: bytes, range_header: str | None) -> _Reply:
        try:
            if host.startswith(VIEWER_HOST_PREFIX):  # the dataset viewer: no export for these repos
                return _Reply(404, {"error": "Not found."})
            for route_method, pattern, name in _ROUTES:
                match = pattern.match(path) if route_method == method else None
                if match:
                    return getattr(self, f"_{name}")(
                        **match.groupdict(),
                        method=method,
                        query=parse_qs(query),
                        form=parse_qs(body.decode()),
                        range_header=range_header,
                    )
            reply = _Reply(404, {"error": f"fakehub: no route for {method} {path}"})
            reply.unrouted = True
            return reply
        except _Reply as error:  # the Hub's error answers, raised from the route methods
            return error
        except Exception as exc:  # a bug here must reach the test as an HTTP error, not a hang
            return _Reply(500, {"error": f"fakehub: {type(exc).__name__}: {exc}"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                hub._connections.add(self.connection)

            def finish(self) -> None:
                hub._connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
                pass  # the request log is hub.requests

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                host = self.headers.get("Host", "")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                reply = hub.route(method, host, url.path, url.query, body, self.headers.get("Range"))
                logged = HubRequest(method, host, unquote(url.path), url.query, reply.status, self.headers.get("Range"))
                hub.requests.append(logged)
                if reply.unrouted:
                    hub.unrouted.append(logged)
                self._send(method, reply)

            def _send(self, method: str, reply: _Reply) -> None:
                payload = reply.body
                if not isinstance(payload, bytes | mmap.mmap):
                    payload = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                    reply.headers.setdefault("Content-Type", "application/json")
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's names
                self._handle("GET")

            def do_HEAD(self) -> None:  # noqa: N802
                self._handle("HEAD")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

        return Handler


@dataclass
class RemoteHub:
    """A fake hub served by another process (the memory benchmark's: the served files stay out of the measured
    process), as ``use_hub`` sees it."""

    port: int
    blocked: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _client_factory(hub: FakeHub | RemoteHub) -> Any:
    """A ``huggingface_hub`` client factory whose transport reaches only ``hub`` (see the module docstring)."""
    import httpx2
    from huggingface_hub.utils._http import hf_request_event_hook

    class LoopbackOnly(httpx2.BaseTransport):
        def __init__(self) -> None:
            self._inner = httpx2.HTTPTransport()

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            url = request.url
            if url.port == hub.port and url.host in ("127.0.0.1", VIEWER_HOST_PREFIX + "127.0.0.1"):
                request.url = url.copy_with(host="127.0.0.1")  # the Host header keeps the name asked for
                return self._inner.handle_request(request)
            hub.blocked.append(f"{request.method} {url}")
            raise HubEscapeError(f"fakehub: blocked {request.method} {url}: only {hub.endpoint} may be reached")

        def close(self) -> None:
            self._inner.close()

    def factory() -> httpx2.Client:
        return httpx2.Client(
            event_hooks={"request": [hf_request_event_hook]},
            follow_redirects=True,
            timeout=None,
            transport=LoopbackOnly(),
            trust_env=False,  # no proxy from the environment between the libraries and 127.0.0.1
        )

    return factory


@contextmanager
def fake_hub(
    tmp_path: Path,
    datasets: Mapping[str, Mapping[str, pa.Table]],
    *,
    extra_files: Mapping[str, Mapping[str, bytes]] | None = None,
    page_size: int = 1000,
    row_group_size: int | None = None,
) -> Iterator[FakeHub]:
    """Serve ``datasets`` ({repo_id: {split: table}}) as Hub dataset repos and point the HF libraries at them."""
    files_root = tmp_path / "fakehub-repos"
    repos = {
        repo_id: make_repo(repo_id, splits, files_root, (extra_files or {}).get(repo_id), row_group_size)
        for repo_id, splits in datasets.items()
    }
    hub = FakeHub(repos, page_size=page_size).start()
    with ExitStack() as stack:
        stack.callback(hub.stop)
        stack.enter_context(use_hub(hub, tmp_path))
        yield hub


@contextmanager
def use_hub(hub: FakeHub | RemoteHub, tmp_path: Path) -> Iterator[FakeHub | RemoteHub]:
    """Point the HF libraries of this process at ``hub`` (which may serve from another process: only its ``port``,
    ``endpoint`` and ``blocked`` are used here); fails on exit if a request tried to leave it."""
    import datasets as hf_datasets
    from huggingface_hub import HfFileSystem, constants
    from huggingface_hub.utils import _http

    home = tmp_path / "hf-home"
    home.mkdir(exist_ok=True)
    hub_cache, datasets_cache = home / "hub", home / "datasets"
    env = {
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(home),
        "HF_DATASETS_CACHE": str(datasets_cache),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    unset = (
        "HF_HUB_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_OIDC_RESOURCE",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
    )
    hub_constants = {
        "ENDPOINT": hub.endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset({"127.0.0.1"}),
        "HF_HUB_OFFLINE": False,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_DISABLE_TELEMETRY": True,
    }
    datasets_config = {
        "HF_ENDPOINT": hub.endpoint,
        "HUB_DATASETS_URL": hub.endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
        "HF_HUB_OFFLINE": False,
        "HF_DATASETS_OFFLINE": False,
        "HF_UPDATE_DOWNLOAD_COUNTS": False,
        "HF_CACHE_HOME": str(home),
        "HF_DATASETS_CACHE": datasets_cache,
        "HF_MODULES_CACHE": home / "modules",
        "DOWNLOADED_DATASETS_PATH": datasets_cache / "downloads",
        "EXTRACTED_DATASETS_PATH": datasets_cache / "downloads" / "extracted",
    }
    saved_factory = _http._GLOBAL_CLIENT_FACTORY
    with ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, env))
        for name in unset:
            os.environ.pop(name, None)  # patch.dict restores the whole environment on exit
        for name, value in hub_constants.items():
            stack.enter_context(mock.patch.object(constants, name, value))
        for name, value in datasets_config.items():
            stack.enter_context(mock.patch.object(hf_datasets.config, name, value))
        origins = frozenset({*_http._HUB_ORIGINS, _http._url_origin(hub.endpoint)})
        stack.enter_context(mock.patch.object(_http, "_HUB_ORIGINS", origins))
        HfFileSystem.clear_instance_cache()
        stack.callback(HfFileSystem.clear_instance_cache)
        _http.set_client_factory(_client_factory(hub))
        stack.callback(_http.set_client_factory, saved_factory)  # also closes the fake hub's client
        yield hub
    if hub.blocked:
        raise HubEscapeError(f"fakehub: requests left the fake hub (blocked): {hub.blocked}")
