"""One local static-file server for every download test (127.0.0.1 only).

The stdlib handler ignores Range; this one honours `Range: bytes=N-` (unless the test
turns `ranges` off, to act like a server that cannot resume) and records each request.
"""
from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    ranges = True         # honour Range headers
    requests: list = []   # (path, Range header) per GET

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).requests.append((self.path, rng))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return self.send_error(404)
        data = path.read_bytes()
        start = int(rng.split("=")[1].split("-")[0]) if rng and self.ranges else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if rng and self.ranges else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


def serve(folder: Path):
    """Serve `folder` on 127.0.0.1; returns (base_url, server, handler class of this server)."""
    handler = type("Handler", (RangeHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=os.fspath(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server, handler
