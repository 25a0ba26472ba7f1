"""A fake Overpass API server over a real socket, shared by the OSM download and HTTP API tests.

Its default answer is ``fixtures/overpass_kotka_clip.json``, a recorded Overpass-style
response built from the real Kotka extract by ``fixtures/make_overpass_fixture.py``.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import FIXTURES

FIXTURE = FIXTURES / "overpass_kotka_clip.json"
STATUS_TEXT = (
    "Connected as: 1\nCurrent time: 2024-01-01T00:00:00Z\nAnnounced endpoint: none\n"
    "Rate limit: 2\n2 slots available now.\nCurrently running queries (pid, space limit, time limit, start time):\n"
)


class FakeOverpass:
    """A scripted Overpass server: ``script`` holds replies for the next interpreter requests.

    A reply is ``(status, body)``, ``("sleep", seconds)`` (then the default reply) or
    ``("drop", None)`` (close the connection without answering). When the script is empty
    the server answers ``default``.
    """

    def __init__(self) -> None:
        self.default: tuple[object, bytes | None] = (200, FIXTURE.read_bytes())
        self.script: list[tuple[object, object]] = []
        self.interpreter_requests: list[str] = []
        self.other_requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._answer()

            def _answer(self) -> None:
                if self.path.split("?")[0] == "/api/status":
                    fake.other_requests.append(self.path)
                    self._send(200, STATUS_TEXT.encode(), "text/plain")
                    return
                if self.path.split("?")[0] != "/api/interpreter":
                    fake.other_requests.append(self.path)
                    self._send(404, b"not found", "text/plain")
                    return
                fake.interpreter_requests.append(self.command)
                status, body = fake.script.pop(0) if fake.script else fake.default
                if status == "sleep":
                    time.sleep(body)
                    status, body = fake.default
                if status == "drop":
                    self.close_connection = True
                    return
                ctype = "application/json" if status == 200 else "text/html"
                self._send(status, body if body is not None else b"<html>error</html>", ctype)

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
