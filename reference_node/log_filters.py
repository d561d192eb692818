"""Log hygiene for library loggers: a client's malformed HTTP is one line, not an ERROR with a traceback.

aiohttp's server logs every request it cannot parse (a bad request line, header or method, a line too
long, a connection reset mid-request) as "Error handling request" at ERROR with a traceback. On a
public listener that is routine noise an attacker can produce at will, and it hides real errors. The
filter turns those records into one INFO line on `trustchain.http` naming the client address and the
reason; errors raised by our own handlers (HTTP 500) keep their traceback.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["ClientProtocolErrors", "install"]

log = logging.getLogger("trustchain.http")

MAX_REASON = 200  # characters of the parser's message kept in the line


class ClientProtocolErrors(logging.Filter):
    """Drops aiohttp's traceback for a client's protocol error and logs one line in its place."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError | ConnectionError):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        peer = str(args[0]) if args else "?"
        text = f"{exc.code} {exc.message}" if isinstance(exc, HttpProcessingError) else str(exc) or type(exc).__name__
        reason = " ".join(text.split())[:MAX_REASON]
        log.info("bad HTTP request from %s: %s", peer, reason,
                 extra={"event": "http_client_error", "fields": {"remote": peer, "reason": reason}})
        return False


def install() -> None:
    """Attach the filter to aiohttp's server logger (once)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientProtocolErrors) for f in server.filters):
        server.addFilter(ClientProtocolErrors())
