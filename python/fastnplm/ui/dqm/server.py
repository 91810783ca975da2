"""The dashboard's read-only HTTP server (standard library ``http.server``): GET and HEAD of the
plain files directly in one folder, 404 for any other path, 405 for other methods. Started by
:func:`fastnplm.ui.dqm.serve`.
"""
from __future__ import annotations

import http.server
import logging
import os
import re
import urllib.parse

log = logging.getLogger("fastnplm")

# the files the server may send: plain names directly in the folder
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".json": "application/json", ".png": "image/png", ".css": "text/css; charset=utf-8"}


class DashboardHandler(http.server.BaseHTTPRequestHandler):
    """GET/HEAD of the plain files directly in the server's folder; 404 for anything else, 405 for
    other methods."""

    server_version = "fastnplm-dashboard"
    sys_version = ""

    def do_GET(self):  # noqa: D102
        self._send(body=True)

    def do_HEAD(self):  # noqa: D102
        self._send(body=False)

    def _refuse(self):
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

    def _file(self):
        """The real path of the requested file inside the folder, or None."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path, errors="strict")
        name = "index.html" if path in ("", "/") else path[1:] if path.startswith("/") else ""
        if not SAFE_NAME.fullmatch(name):  # no "/", "\", "..", NUL, hidden or odd names
            return None
        root = self.server.root  # type: ignore[attr-defined]
        real = os.path.realpath(os.path.join(root, name))
        if os.path.dirname(real) != root or not os.path.isfile(real):  # e.g. a link pointing outside
            return None
        return real

    def _send(self, body):
        try:
            real = self._file()
        except UnicodeDecodeError:
            real = None
        if real is None:
            self.send_error(404, "not found")
            return
        with open(real, "rb") as fh:
            data = fh.read()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPES.get(os.path.splitext(real)[1], "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                         "style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'none'")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002, D102
        log.debug("dashboard: %s - %s", self.address_string(), format % args)


class DashboardServer(http.server.ThreadingHTTPServer):
    """The read-only dashboard server of one folder (see :func:`serve`)."""

    daemon_threads = True

    def __init__(self, folder, host="127.0.0.1", port=8765):
        self.root = os.path.realpath(folder)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"no dashboard folder {folder!r}")
        super().__init__((host, port), DashboardHandler)

    @property
    def url(self) -> str:
        """The address to open."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"
