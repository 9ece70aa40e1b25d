"""A stand-in for the Hugging Face hub on 127.0.0.1, speaking the part of its HTTP API that
huggingface_hub uses to download and list model files:

    HEAD/GET /{owner}/{repo}/resolve/{revision}/{path}   200 with X-Repo-Commit, ETag,
        Content-Length; misses are 404 with X-Error-Code RepoNotFound, RevisionNotFound
        or EntryNotFound
    GET /api/models/{owner}/{repo}/tree/{revision}       JSON [{type, path, oid, size}]

A `.pt` file is served as LFS files are (its ETag is its sha256), any other as a small
git file (its ETag is its git blob id). Every request is counted; `tamper` makes a file's
GET body differ from what its headers promise (cut short, or with other bytes).
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


def etag_of(path: str, data: bytes) -> str:
    if path.endswith(".pt"):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class StandInHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}   # repo -> {"main": commit, "commits": {commit: {path: bytes}}}
        self.requests: list[tuple[str, str]] = []
        self.tampered: dict[tuple[str, str], str] = {}  # (repo, path) -> "truncate" | "alter"
        self._server = None

    def publish(self, repo: str, files: dict[str, bytes]) -> str:
        """A new commit of `repo` holding `files` (added to its current ones); main moves to it."""
        entry = self.repos.setdefault(repo, {"main": None, "commits": {}})
        current = dict(entry["commits"].get(entry["main"], {}))
        current.update(files)
        commit = hashlib.sha1(repr((repo, len(entry["commits"]), sorted(current))).encode()).hexdigest()
        entry["commits"][commit] = current
        entry["main"] = commit
        return commit

    def rewrite(self, repo: str, commit: str, path: str, data: bytes) -> None:
        """Replaces a file inside an existing commit (what a pin must catch)."""
        self.repos[repo]["commits"][commit][path] = data

    def tamper(self, repo: str, path: str, how: str | None) -> None:
        if how is None:
            self.tampered.pop((repo, path), None)
        else:
            self.tampered[(repo, path)] = how

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "StandInHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.serve(self, body=False)

            def do_GET(self):
                hub.serve(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve(self, request: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(request.path).path)
        self.requests.append((request.command, path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            return self._tree(request, "/".join(parts[2:4]), parts[5], body)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._file(request, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), body)
        self._miss(request, "RepoNotFound")

    def _commit(self, request, repo: str, revision: str):
        entry = self.repos.get(repo)
        if entry is None:
            return self._miss(request, "RepoNotFound")
        commit = entry["main"] if revision == "main" else revision
        if commit not in entry["commits"]:
            return self._miss(request, "RevisionNotFound")
        return commit

    def _file(self, request, repo: str, revision: str, name: str, body: bool) -> None:
        commit = self._commit(request, repo, revision)
        if commit is None:
            return
        data = self.repos[repo]["commits"][commit].get(name)
        if data is None:
            return self._miss(request, "EntryNotFound", commit)
        sent = data
        how = self.tampered.get((repo, name))
        if how == "truncate":
            sent = data[: len(data) // 2]
        elif how == "alter":
            sent = bytes([data[0] ^ 0xFF]) + data[1:]
        request.send_response(200)
        request.send_header("X-Repo-Commit", commit)
        request.send_header("ETag", f'"{etag_of(name, data)}"')
        request.send_header("Content-Length", str(len(data)))
        request.send_header("Content-Type", "application/octet-stream")
        request.end_headers()
        if body:
            try:
                request.wfile.write(sent)
            except (BrokenPipeError, ConnectionResetError):
                pass
        request.close_connection = True

    def _tree(self, request, repo: str, revision: str, body: bool) -> None:
        commit = self._commit(request, repo, revision)
        if commit is None:
            return
        entries = []
        for name, data in sorted(self.repos[repo]["commits"][commit].items()):
            entry = {"type": "file", "path": name, "oid": etag_of(name + ".git", data), "size": len(data)}
            if name.endswith(".pt"):
                entry["lfs"] = {"oid": etag_of(name, data), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        payload = json.dumps(entries).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if body:
            request.wfile.write(payload)

    def _miss(self, request, code: str, commit: str | None = None) -> None:
        request.send_response(404)
        request.send_header("X-Error-Code", code)
        if commit:
            request.send_header("X-Repo-Commit", commit)
        request.send_header("Content-Length", "0")
        request.end_headers()


def main() -> None:
    """`python -m tests.hub_server`: serve the official-format test fixtures as the hub
    would (`mel256-ec-base_st`, `mel256-ec-base`, `v1/base`) until Ctrl-C, to try the
    commands by hand with HF_ENDPOINT set to the printed address."""
    fixtures = Path(__file__).resolve().parent / "fixtures" / "official"
    hub = StandInHub()
    hub.publish("lpepino/encodecmae-v2", {"mel256-ec-base_st.pt": (fixtures / "mel256_st.pt").read_bytes(),
                                          "mel256-ec-base.pt": (fixtures / "mel256.pt").read_bytes()})
    hub.publish("lpepino/encodecmae-base", {name: (fixtures / "v1_ec" / name).read_bytes()
                                            for name in ("model.pt", "config.gin")})
    hub.start()
    print(f"HF_ENDPOINT={hub.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
