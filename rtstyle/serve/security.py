"""What keeps the server safe to run: loopback unless asked, a token on every endpoint, limits on frames.

The server binds 127.0.0.1 unless `--host` (or `--serve HOST:PORT`) names another address, which prints a
warning. Where the host is not loopback a token is required: `--token`, or one generated and printed at start.
Every request then needs it (`?token=` in the address, which the page passes on to its WebSocket and stream,
or an `Authorization: Bearer` header); anything else, unknown paths included, answers 401 without saying more.
A WebSocket whose Origin is another site is refused too (a page elsewhere must not drive a loopback server).
`FrameLimits` bounds what one browser may send: bytes and pixels per frame, frames per second.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from ..errors import UserError

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class FrameLimits:
    """What one WebSocket client may send; more is refused with a message to that client."""

    max_bytes: int = 4 * 1024 * 1024  # one encoded frame
    max_pixels: int = 1920 * 1080  # decoded size (a small file can announce huge dimensions)
    max_side: int = 4096
    max_fps: float = 60.0  # frames above this rate are dropped undecoded, with a warning


def parse_address(text: str, default_host: str = DEFAULT_HOST) -> tuple[str, int]:
    """'8080' -> (default_host, 8080); 'HOST:PORT'; '[::1]:8080' for IPv6."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"--serve {text!r}: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def resolve_token(host: str, token: str | None, log) -> str | None:
    """The token every request must carry (None: none needed, loopback without --token); warns off loopback."""
    if is_loopback(host):
        return token
    if token is None:
        token = secrets.token_urlsafe(16)
        log(f"access token (generated; pass --token to choose one): {token}")
    log(f"[yellow]warning:[/] serving on {host}, not loopback: anyone who can reach it and has the token sees "
        "and uses it; prefer an SSH tunnel to 127.0.0.1")
    return token


def page_url(host: str, port: int, token: str | None, path: str = "/") -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}{path}" + (f"?token={token}" if token else "")


def _given_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:]
    return request.query.get("token", "")


def auth_middleware(token: str | None):
    """401 for every request without `token` (when there is one); 403 for a cross-site WebSocket."""

    @web.middleware
    async def check(request: web.Request, handler):
        if token is not None and not hmac.compare_digest(_given_token(request).encode(), token.encode()):
            return web.Response(status=401, text="401: this server needs its token: open the address it printed "
                                                 "at start (…?token=…)\n",
                                headers={"WWW-Authenticate": 'Bearer realm="rtstyle"'})
        origin = request.headers.get("Origin")
        if request.headers.get("Upgrade", "").lower() == "websocket" and origin and \
                urlsplit(origin).netloc != request.host:
            return web.Response(status=403, text=f"403: WebSocket from another origin ({origin}) refused\n")
        return await handler(request)

    return check
