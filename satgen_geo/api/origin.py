"""Refuse requests sent by web pages the server does not trust, before their body is read.

CORS only hides a response from a foreign page; the request itself still runs. A browser
marks every cross-origin request with an ``Origin`` header, so a request whose ``Origin``
is neither one of the server's CORS origins nor the server itself (its own ``/docs`` page)
gets 403 at once. Requests without ``Origin`` (curl, scripts, GIS clients) are not affected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from satgen_geo.api.errors import error_response


class OriginCheck:
    """ASGI middleware: 403 for a request whose ``Origin`` is present and not allowed."""

    def __init__(self, app: Any, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = {origin.rstrip("/").lower() for origin in allowed}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or self.accepts(scope):
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        message = (
            f"requests from the web page at {origin} are not allowed; this server accepts browser requests "
            f"only from its CORS origins ({', '.join(sorted(self.allowed)) or 'none'}), which its operator can extend"
        )
        await error_response(403, message, "cors_origins", {"Connection": "close"})(scope, receive, send)

    def accepts(self, scope: dict) -> bool:
        """Whether the request has no ``Origin``, an allowed one, or the server's own."""
        origin = _header(scope, b"origin")
        if origin is None or "*" in self.allowed:
            return True
        origin = origin.rstrip("/").lower()
        own = f"{scope.get('scheme', 'http')}://{_header(scope, b'host') or ''}".lower()
        return origin in self.allowed or origin == own


def _header(scope: dict, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), decoded as Latin-1."""
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return None
