"""The HTTP router and the built-in routes, served by a real RpcServer on 127.0.0.1."""

import asyncio
import contextlib
import json
import logging
import re
import time
import urllib.error
import urllib.request

from support.aio import run_async

from dupkv.base.errors import BadInput
from dupkv.http import HttpRouter, HttpStatusError, VersionInfo, common_routes
from dupkv.metrics import Registry, Unit
from dupkv.rpc.httpcodec import HttpResponse
from dupkv.rpc.server import RpcServer

START = time.mktime((2024, 11, 20, 10, 0, 0, 0, 0, -1))  # local time, as Pegasus prints it


@contextlib.asynccontextmanager
async def serving():
    registry = Registry("replica", "onebox", "127.0.0.1", 0)
    e = registry.entity("replica", "replica@2.5", {"table_id": "2", "partition_id": "5"})
    e.counter("get_requests", Unit.REQUESTS, "The number of GET requests").inc(7)
    lat = e.percentile("get_latency_ns", Unit.NANOSECONDS, "The latency of GET requests")
    for v in range(100):
        lat.observe(v)
    router = HttpRouter()
    common_routes(router, registry, VersionInfo("dupkv 0.1.0", "abc123"), START)

    async def boom(query: dict[str, str], body: bytes) -> object:
        raise RuntimeError("a bug in a handler")

    async def picky(query: dict[str, str], body: bytes) -> object:
        if "name" not in query:
            raise BadInput("name should not be empty")
        if query["name"] == "gone":
            raise HttpStatusError(404, 'table not found: "gone"')
        return {"name": query["name"], "body": body.decode()}

    async def raw(query: dict[str, str], body: bytes) -> HttpResponse:
        return HttpResponse(200, "text/plain; charset=utf-8", b"as is\n")

    async def unserializable(query: dict[str, str], body: bytes) -> object:
        return {"not json": object()}

    router.add("/test/boom", boom, "raises")
    router.add("/test/unserializable", unserializable, "returns what json cannot take")
    router.add("/test/picky", picky, "checks its args", methods=("GET", "POST"))
    router.add("/test/raw", raw, "an HttpResponse passes through")
    server = RpcServer("127.0.0.1", 0, {}, router)
    await server.start()
    registry.port = server.port
    try:
        yield server, router
    finally:
        await server.stop()


class Client:
    """A keep-alive HTTP/1.1 client on one raw connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Client":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(
        self, method: str, target: str, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {target} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        status_line, *lines = (await self.reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.lower()] = value.strip()
        length = 0 if method == "HEAD" else int(headers["content-length"])
        return int(status_line.split(" ")[1]), headers, await self.reader.readexactly(length)

    async def json(self, target: str, method: str = "GET") -> tuple[int, object]:
        status, headers, body = await self.request(method, target)
        assert headers["content-type"] == "application/json"
        return status, json.loads(body)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@run_async
async def test_builtin_routes():
    async with serving() as (server, _):
        c = await Client.open(server.port)
        status, index = await c.json("/")
        assert status == 200
        assert list(index) == sorted(index)
        assert {"/", "/version", "/recentStartTime", "/metrics", "/metrics/prometheus"} <= set(
            index
        )
        assert "with_metric_fields" in index["/metrics"]
        assert await c.json("/version") == (200, {"Version": "dupkv 0.1.0", "GitCommit": "abc123"})
        assert await c.json("/recentStartTime") == (
            200,
            {"RecentStartTime": "2024-11-20 10:00:00"},
        )
        await c.close()


@run_async
async def test_metrics_json_and_query_args():
    async with serving() as (server, _):
        c = await Client.open(server.port)
        status, headers, body = await c.request("GET", "/metrics")
        assert status == 200 and body.startswith(b"# HELP")  # bare: Prometheus text
        status, doc = await c.json("/metrics?format=json")
        assert status == 200
        assert (doc["cluster"], doc["role"], doc["port"]) == ("onebox", "replica", server.port)
        assert abs(doc["timestamp_ns"] - time.time_ns()) < 60e9
        by_id = {e["id"]: e for e in doc["entities"]}
        assert by_id["replica@2.5"]["metrics"][0] == {"name": "get_requests", "value": 7}
        server_metrics = {m["name"]: m["value"] for m in by_id["server"]["metrics"]}
        assert server_metrics["resident_mem_usage_mb"] >= 1  # refreshed on export

        status, doc = await c.json("/metrics?types=replica&metrics=get_latency_ns&detail=true")
        assert status == 200
        ((entity,),) = [doc["entities"]]
        assert entity["metrics"] == [
            {
                "type": "Percentile",
                "name": "get_latency_ns",
                "unit": "NanoSeconds",
                "desc": "The latency of GET requests",
                "p50": 50,
                "p90": 90,
                "p95": 95,
                "p99": 99,
                "p999": 99,
            }
        ]
        status, doc = await c.json("/metrics?attributes=table_id,2&with_metric_fields=value")
        assert [e["id"] for e in doc["entities"]] == ["replica@2.5"]
        await c.close()


@run_async
async def test_metrics_prometheus_by_arg_and_by_path():
    async with serving() as (server, _):
        c = await Client.open(server.port)
        status, headers, body = await c.request("GET", "/metrics?format=prometheus")
        assert status == 200
        assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = body.decode()
        assert "# TYPE dupkv_get_requests counter\n" in text
        assert (
            'dupkv_get_requests{entity="replica",id="replica@2.5",table_id="2",'
            'partition_id="5"} 7\n'
        ) in text
        assert "# TYPE dupkv_get_latency_ns summary\n" in text
        assert re.search(r'dupkv_resident_mem_usage_mb\{entity="server",id="server"\} \d+\n', text)
        status, headers, body = await c.request("GET", "/metrics/prometheus?types=server")
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "dupkv_resident_mem_usage_mb" in body.decode()
        assert "dupkv_get_requests" not in body.decode()
        await c.close()


@run_async
async def test_errors_and_the_server_keeps_serving(caplog):
    async with serving() as (server, router):
        c = await Client.open(server.port)  # every error below on one keep-alive connection
        status, body = await c.json("/no/such/path")
        assert status == 404 and "no such path: /no/such/path" in body["error_message"]
        status, body = await c.json("/metrics", method="POST")
        assert status == 400 and "please use 'GET' method" in body["error_message"]
        status, body = await c.json("/metrics?bogus=1")
        assert (status, body["error_message"][:23]) == (400, "unknown field bogus=1; ")
        status, body = await c.json("/metrics?attributes=table_id")
        assert status == 400 and "should be even" in body["error_message"]
        status, body = await c.json("/metrics?format=prometheus&detail=true")
        assert status == 400
        status, body = await c.json("/test/picky")
        assert (status, body) == (400, {"error_message": "name should not be empty"})
        status, body = await c.json("/test/picky?name=gone")
        assert (status, body) == (404, {"error_message": 'table not found: "gone"'})
        with caplog.at_level(logging.ERROR, logger="dupkv.http.router"):
            status, body = await c.json("/test/boom")
            assert status == 500 and "RuntimeError" in body["error_message"]
            status, body = await c.json("/test/unserializable")
            assert status == 500 and "TypeError" in body["error_message"]
        assert router.handler_errors == 2
        assert "a bug in a handler" in caplog.text and "Traceback" in caplog.text
        # Still serving, on the same connection and on a new one.
        assert (await c.json("/version"))[0] == 200
        status, _, body = await c.request("POST", "/test/picky?name=t", b"payload")
        assert (status, json.loads(body)) == (200, {"name": "t", "body": "payload"})
        status, headers, body = await c.request("GET", "/test/raw")
        assert (status, headers["content-type"], body) == (
            200,
            "text/plain; charset=utf-8",
            b"as is\n",
        )
        status, headers, body = await c.request("HEAD", "/version")
        assert status == 200 and int(headers["content-length"]) > 0 and body == b""
        status, _ = await c.json("/version/")  # a trailing slash is the same path
        assert status == 200
        await c.close()
        other = await Client.open(server.port)
        assert (await other.json("/recentStartTime"))[0] == 200
        await other.close()


@run_async
async def test_a_standard_client_reads_it():
    async with serving() as (server, _):
        base = f"http://127.0.0.1:{server.port}"

        def fetch(path: str) -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(base + path, timeout=10) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as e:
                with e:
                    return e.code, e.read()

        status, body = await asyncio.to_thread(fetch, "/metrics?types=replica")
        assert status == 200 and json.loads(body)["entities"][0]["id"] == "replica@2.5"
        status, body = await asyncio.to_thread(fetch, "/nope")
        assert status == 404 and "error_message" in json.loads(body)
