"""HTTP in and out, nothing else: parse a request, ``routes.dispatch`` it, write the reply."""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .routes import Reply, Request, dispatch
from .state import ServiceState

log = logging.getLogger("qjm.emulator")


class EmulatorHandler(BaseHTTPRequestHandler):
    """One connection's requests, each answered by ``dispatch`` on the server's state."""

    server: EmulatorHTTPServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the body waits for the client's
    # delayed ACK (~40 ms a request), which would make the emulator, not qjm, the bottleneck.
    disable_nagle_algorithm = True
    server_version = "qjm-emulator/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from stdlib
        log.debug("%s %s", self.address_string(), format % args)

    def _request(self) -> Request:
        url = urlsplit(self.path)
        # The body is always read, even when unused, so the next request on the connection parses.
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        return Request(self.command, url.path, parse_qs(url.query), body, headers)

    def _send(self, reply: Reply) -> None:
        if reply.text is not None:
            payload, ctype = reply.text.encode(), "text/plain; charset=utf-8"
        elif reply.body is not None:
            payload, ctype = json.dumps(reply.body).encode(), "application/json"
        else:
            payload, ctype = b"", "application/json"
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if payload or reply.status != 204:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _handle(self) -> None:
        self._send(dispatch(self.server.state, self._request()))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the emulated state its handlers dispatch on."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: ServiceState) -> None:
        super().__init__(address, EmulatorHandler)
        self.state = state
