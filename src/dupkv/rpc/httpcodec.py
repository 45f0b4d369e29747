"""A minimal HTTP/1.1 server codec for the endpoints served on the RPC port (pure).

Enough for curl, browsers and monitoring scrapers: request line, headers, a body given by
Content-Length, keep-alive (HTTP/1.1 default; HTTP/1.0 only when asked). No chunked
request bodies, no upgrades. Limits: header block size, header count, body size.

Events: `HttpRequest`, or `HttpError` (answer with its status, then close: after a
malformed request the stream cannot be trusted).
"""

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_HEADERS = 100

_REASONS = {
    200: "OK",
    204: "No Content",
    307: "Temporary Redirect",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes
    keep_alive: bool


@dataclass(frozen=True)
class HttpError:
    status: int
    reason: str


@dataclass(frozen=True)
class HttpResponse:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(default=())


class HttpRequestParser:
    def __init__(
        self,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        self._max_header = max_header_bytes
        self._max_body = max_body_bytes
        self._max_headers = max_headers
        self._buf = bytearray()
        self._head: tuple | None = None  # parsed head waiting for its body
        self._dead = False

    def receive_data(self, data: bytes) -> None:
        if not self._dead:
            self._buf += data

    def _fail(self, status: int, reason: str) -> HttpError:
        self._dead = True
        self._buf.clear()
        return HttpError(status, reason)

    def next_event(self) -> HttpRequest | HttpError | None:
        if self._dead:
            return None
        if self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > self._max_header:
                    return self._fail(431, "request head too large")
                return None
            if end + 4 > self._max_header:
                return self._fail(431, "request head too large")
            head = bytes(self._buf[:end])
            del self._buf[: end + 4]
            parsed = self._parse_head(head)
            if isinstance(parsed, HttpError):
                return parsed
            self._head = parsed
        method, target, version, headers, length = self._head
        if len(self._buf) < length:
            return None
        body = bytes(self._buf[:length])
        del self._buf[:length]
        self._head = None
        split = urlsplit(target)
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            keep_alive = "close" not in connection
        else:
            keep_alive = "keep-alive" in connection
        return HttpRequest(
            method=method,
            path=unquote(split.path) or "/",
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            body=body,
            keep_alive=keep_alive,
        )

    def _parse_head(self, head: bytes) -> tuple | HttpError:
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
            return self._fail(400, "undecodable request head")
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return self._fail(400, f"bad request line {lines[0][:80]!r}")
        method, target, version = parts
        if method not in _METHODS:
            return self._fail(501 if method.isalpha() else 400, f"method {method[:16]!r}")
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            return self._fail(400, f"unsupported version {version[:16]!r}")
        if not target.startswith("/"):
            return self._fail(400, "request target must be an absolute path")
        if len(lines) - 1 > self._max_headers:
            return self._fail(431, f"more than {self._max_headers} headers")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                return self._fail(400, f"bad header line {line[:80]!r}")
            headers[name.lower()] = value.strip()
        if "transfer-encoding" in headers:
            return self._fail(501, "Transfer-Encoding is not supported; send Content-Length")
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            return self._fail(400, f"bad Content-Length {length_text[:20]!r}")
        length = int(length_text)
        if length > self._max_body:
            return self._fail(413, f"body of {length} bytes exceeds {self._max_body}")
        return method, target, version, headers, length


def encode_response(resp: HttpResponse, *, keep_alive: bool, head_only: bool = False) -> bytes:
    """Serialize a response with Content-Length; `head_only` leaves the body out (HEAD)."""
    lines = [
        f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Unknown')}",
        f"Content-Type: {resp.content_type}",
        f"Content-Length: {len(resp.body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    lines += [f"{name}: {value}" for name, value in resp.headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + resp.body


def error_response(err: HttpError) -> HttpResponse:
    return HttpResponse(err.status, "text/plain; charset=utf-8", (err.reason + "\n").encode())
