"""The minimal HTTP/1.1 codec of the RPC port."""

import pytest

from dupkv.rpc.httpcodec import (
    HttpError,
    HttpRequest,
    HttpRequestParser,
    HttpResponse,
    encode_response,
)


def parse(data: bytes, **kw) -> list:
    p = HttpRequestParser(**kw)
    p.receive_data(data)
    out = []
    while (e := p.next_event()) is not None:
        out.append(e)
    return out


def test_get_with_query_and_keep_alive():
    (req,) = parse(b"GET /meta/app?name=t%201&detail HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(req, HttpRequest)
    assert (req.method, req.path, req.query) == ("GET", "/meta/app", {"name": "t 1", "detail": ""})
    assert req.keep_alive and req.headers["host"] == "x"


def test_connection_semantics():
    (a,) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    (b,) = parse(b"GET / HTTP/1.0\r\n\r\n")
    (c,) = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    assert (a.keep_alive, b.keep_alive, c.keep_alive) == (False, False, True)


def test_body_split_across_reads_and_pipelining():
    p = HttpRequestParser()
    data = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + b"GET /y HTTP/1.1\r\n\r\n"
    events = []
    for i in range(len(data)):
        p.receive_data(data[i : i + 1])
        while (e := p.next_event()) is not None:
            events.append(e)
    assert [(e.path, e.body) for e in events] == [("/x", b"hello"), ("/y", b"")]


@pytest.mark.parametrize(
    "data, status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2\r\n\r\n", 400),
        (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
        (b"BREW / HTTP/1.1\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 413),
        (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n", 431),
    ],
)
def test_bad_requests(data, status):
    (err,) = parse(data, max_header_bytes=2048, max_body_bytes=1000)
    assert isinstance(err, HttpError) and err.status == status


def test_encode_response():
    resp = HttpResponse(307, "text/plain", b"moved", (("Location", "http://a/b"),))
    raw = encode_response(resp, keep_alive=False)
    assert raw.startswith(b"HTTP/1.1 307 Temporary Redirect\r\n")
    assert b"Content-Length: 5\r\n" in raw and b"Location: http://a/b\r\n" in raw
    assert raw.endswith(b"\r\n\r\nmoved")
    assert encode_response(resp, keep_alive=True, head_only=True).endswith(b"\r\n\r\n")
