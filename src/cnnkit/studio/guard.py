"""Who may talk to the studio: its own page, opened on this machine, and nothing else.

A local server that trains, reads folders and writes files is reachable from every web page
the person has open.  Three checks keep those pages out (ASGI middleware, before any body is read):

* **Host**: the Host header must name the address the studio is bound to (``127.0.0.1``,
  ``localhost``, ``[::1]`` or the ``--host`` given, with its port).  A page that rebinds its own
  DNS name to 127.0.0.1 sends its own name, and gets 421.
* **Origin**: a request that changes something (any method but GET, HEAD, OPTIONS) must come
  from the studio's own origin: ``Origin`` equal to ``http://<Host>``, or, without an Origin,
  ``Sec-Fetch-Site: same-origin``.  Otherwise 403.
* **Token**: the same requests carry ``X-Cnnkit-Token``, a random value made when the process
  starts and written into the page it serves; only a script of that page can read it.  A form
  on another site cannot set a header, so it cannot start a job even where Origin is missing.

JSON bodies must be ``application/json`` (415 otherwise; checked where the body is read): an
HTML form can send ``text/plain`` across sites without a preflight, never ``application/json``.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_HEADER = "x-cnnkit-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WILDCARD = ("0.0.0.0", "::", "[::]", "")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _bracketed(host: str) -> str:
    """An IPv6 address as it appears in a Host header: ``[::1]``."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host.strip("[]")).version == 6 else host
    except ValueError:
        return host


def host_names(host: str) -> frozenset[str]:
    """The names a browser may use for a studio bound to ``host`` (lower case, IPv6 bracketed).

    A wildcard address (``0.0.0.0``, ``::``) also answers to this machine's name and addresses.
    """
    names = {*LOOPBACK, _bracketed(host.lower())}
    if host in WILDCARD:
        try:
            name, aliases, addresses = socket.gethostbyname_ex(socket.gethostname())
            names |= {name.lower(), *(a.lower() for a in aliases), *addresses}
        except OSError:
            pass
    return frozenset(names - set(WILDCARD))


def split_host(value: str) -> tuple[str, int | None]:
    """``"[::1]:8765"`` -> ("[::1]", 8765); ``"localhost"`` -> ("localhost", None); a bad port -> -1."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name += "]"
        if not rest:
            return name, None
        if not rest.startswith(":"):
            return value, -1
        port = rest[1:]
    elif ":" in value:
        name, _, port = value.partition(":")  # names and IPv4 addresses hold no colon
    else:
        return value, None
    return name, int(port) if port.isdigit() and len(port) <= 5 else -1


class Guard:
    """ASGI middleware: the Host check on every request; Origin and token on state-changing ones.

    ``port`` None (or 0) accepts any port on the allowed names (an app not yet bound, tests).
    """

    def __init__(self, app: ASGIApp, token: str, host: str = "127.0.0.1", port: int | None = None):
        self.app, self.token = app, token
        self.names, self.port = host_names(host), port or None

    def host_ok(self, value: str) -> bool:
        name, port = split_host(value)
        if name not in self.names or port == -1:
            return False
        if self.port is None:
            return True
        return port == self.port or (port is None and self.port == 80)

    def _allowed(self) -> str:
        names = sorted(self.names)[:4]
        return ", ".join(f"{n}:{self.port}" if self.port else n for n in names)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, reason) when the request must be refused, else None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self.host_ok(host):
            return 421, (f"wrong Host {host[:80]!r}: this studio answers only to {self._allowed()} "
                         "(a page that renames its own address to this machine is refused)")
        if scope["method"] in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            if origin == "null" or parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
                return 403, (f"cross-site request refused: Origin {origin[:80]!r} is not this studio's page; "
                             "only the studio's own page may change anything")
        elif headers.get("sec-fetch-site") != "same-origin":
            return 403, ("request refused: a request that changes something must come from the studio's own "
                         "page (send Origin: http://" + host[:80] + ")")
        if not secrets.compare_digest(headers.get(TOKEN_HEADER, ""), self.token):
            return 403, ("request refused: the session token is missing or wrong (reload the page: the token "
                         "is written into it, and changes when the studio restarts)")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        status, detail = refused
        await JSONResponse({"detail": detail}, status)(scope, receive, send)
