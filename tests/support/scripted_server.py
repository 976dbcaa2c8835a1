"""A real HTTP server on 127.0.0.1 that answers as a test scripts it, and records requests."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    split: float = 0.0
    """Seconds between the two halves of the body (sent in two writes)."""
    echo: bool = False
    """Answer with the request as JSON (method, path, headers, body), as some APIs do in
    their errors, instead of `body`."""


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class ScriptedServer:
    """`script(path, reply, ...)` queues answers for a path; once they are used up the last
    one repeats (200 when nothing was scripted). `received` lists what arrived."""

    def __init__(self) -> None:
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:  # the client went away mid-request (e.g. SIGKILL)
                    self.close_connection = True
                    return
                path = self.path.split("?")[0]
                reply = server._next(path)
                with server._arrived:
                    server.received.append(Received(self.command, self.path, dict(self.headers),
                                                    body, time.time()))
                    server._arrived.notify_all()
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.echo:
                    reply = Reply(reply.status, json.dumps({
                        "method": self.command, "path": self.path, "headers": dict(self.headers),
                        "body": body.decode("utf-8", "replace")}).encode(), reply.headers)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if reply.split:
                        half = len(reply.body) // 2
                        self.wfile.write(reply.body[:half])
                        self.wfile.flush()
                        time.sleep(reply.split)
                        self.wfile.write(reply.body[half:])
                    else:
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_POST = do_PUT = do_GET = do_PATCH = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A short poll interval: shutdown() waits for the loop to look at its flag.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                       daemon=True)

    def _next(self, path: str) -> Reply:
        with self._lock:
            queue = self._scripts.get(path)
            if not queue:
                return Reply()
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path] = list(replies)

    def url(self, path: str = "") -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return self._at(path)

    def _at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path.split("?")[0] == path]

    def wait_for(self, path: str, count: int, timeout: float = 60.0) -> list[Received]:
        """Block until `count` requests have arrived at `path`; return them all. Woken by
        each arrival, so it returns as soon as the last one is in."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._at(path)) >= count, timeout):
                raise AssertionError(f"{len(self._at(path))} of {count} requests arrived at "
                                     f"{path} in {timeout:g}s")
            return self._at(path)

    def __enter__(self) -> "ScriptedServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
