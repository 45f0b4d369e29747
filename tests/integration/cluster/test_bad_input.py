"""Bad input never takes a server down: a replica server (a real process) answers or drops
malformed frames, a header CRC that does not match, oversized frames and writes, unknown
RPC names and malformed arguments, a client asking for a table that does not exist gets a
clear error, and afterwards the same server still serves a normal set and get.
"""

import socket
import struct
from collections.abc import Iterator

import pytest
from support.cluster import Cluster, running

from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.client.blocking import BlockingClient, BlockingTable
from dupkv.rpc import codes, framing
from dupkv.storage.schema import encode_key

MAX_WRITE = 4096  # [replication] max_allowed_write_size of this cluster
GET = "RPC_RRDB_RRDB_GET"
PUT = "RPC_RRDB_RRDB_PUT"
SOCKET_TIMEOUT_S = 5.0


class Served:
    def __init__(self, cluster: Cluster, client: BlockingClient, table: BlockingTable) -> None:
        self.cluster = cluster
        self.client = client
        self.table = table
        self.port = cluster.replica_ports[0]

    def get_frame(self, seqid: int, hash_key: bytes, sort_key: bytes, **kw: object) -> bytes:
        args = codes.METHODS[GET].encode_arg(encode_key(hash_key, sort_key))
        return framing.encode_request(GET, seqid, args, app_id=self.table.app_id, **kw)  # type: ignore[arg-type]

    def still_serves(self) -> None:
        assert self.cluster.replica_procs[0].alive
        self.table.set(b"after", b"bad input", b"still fine")
        assert self.table.get(b"after", b"bad input") == b"still fine"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("bad-input")
    extra = f"[replication]\nmax_allowed_write_size = {MAX_WRITE}\n"
    cluster = Cluster("bad-input", root, replicas=1, extra_config=extra)
    with running(cluster), BlockingClient(cluster.meta_address) as client:
        client.create_table("one", partition_count=1)
        table = client.open_table("one")
        table.set(b"hk", b"sk", b"value")
        yield Served(cluster, client, table)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
    sock.settimeout(SOCKET_TIMEOUT_S)
    return sock


def responses(sock: socket.socket, count: int) -> list[framing.Response]:
    decoder = framing.ResponseDecoder()
    out: list[framing.Response] = []
    while len(out) < count:
        data = sock.recv(65536)
        assert data, f"connection closed after {len(out)} of {count} responses"
        for event in decoder.feed(data):
            assert isinstance(event, framing.Response), event
            out.append(event)
    return out


def closed_without_answer(sock: socket.socket) -> bool:
    """True when the server closes the connection and sent nothing first."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def test_a_well_formed_raw_get_is_answered(served: Served) -> None:
    """The control for the raw-frame tests below: our hand-built frames are right."""
    with connect(served.port) as sock:
        sock.sendall(served.get_frame(1, b"hk", b"sk", with_header_crc=True))
        [resp] = responses(sock, 1)
    assert (resp.name, resp.seqid, resp.error_code) == (GET + "_ACK", 1, ErrorCode.OK)
    assert codes.METHODS[GET].decode_result(resp.result).value == b"value"


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"GARBAGE!" * 8, id="not-thft"),
        pytest.param(b"THFT" + struct.pack(">I", 7) + bytes(40), id="header-version-7"),
        pytest.param(b"THFT" + struct.pack(">II", 0, 32) + bytes(36), id="header-length-32"),
        pytest.param(
            b"THFT" + struct.pack(">IIII", 0, 48, 0, 1 << 30) + bytes(28), id="body-of-1-GiB"
        ),
        pytest.param(
            framing.encode_request(GET, 1, b"")[:48] + b"\xff" * 12, id="unreadable-message"
        ),
    ],
)
def test_a_malformed_frame_closes_that_connection_only(served: Served, garbage: bytes) -> None:
    with connect(served.port) as sock:
        if garbage.startswith(b"THFT") and len(garbage) > 48:  # fix the body length
            garbage = garbage[:16] + struct.pack(">I", len(garbage) - 48) + garbage[20:]
        sock.sendall(garbage)
        assert closed_without_answer(sock)
    served.still_serves()


def test_a_wrong_header_crc_closes_the_connection(served: Served) -> None:
    frame = bytearray(served.get_frame(1, b"hk", b"sk", with_header_crc=True))
    good_crc = struct.unpack(">I", frame[12:16])[0]
    frame[12:16] = struct.pack(">I", good_crc ^ 0x5A5A5A5A)
    with connect(served.port) as sock:
        sock.sendall(bytes(frame))
        assert closed_without_answer(sock)
    served.still_serves()


def test_a_write_over_max_allowed_write_size_is_refused_with_err_invalid_data(
    served: Served,
) -> None:
    with pytest.raises(DupkvError) as e:
        served.table.set(b"big", b"value", b"x" * (MAX_WRITE + 1))
    assert e.value.code == ErrorCode.INVALID_DATA
    assert served.table.get(b"big", b"value") is None
    served.table.set(b"big", b"value", b"x" * (MAX_WRITE // 2))  # under the cap: accepted
    served.still_serves()


def test_unknown_rpc_names_and_malformed_args_are_answered_on_a_live_connection(
    served: Served,
) -> None:
    with connect(served.port) as sock:
        sock.sendall(framing.encode_request("RPC_NO_SUCH_THING", 7, b"\x00"))
        sock.sendall(framing.encode_request(PUT, 8, b"\x0c\x00\x01\xff\xff\xff"))
        sock.sendall(served.get_frame(9, b"hk", b"sk"))
        got = {r.seqid: r for r in responses(sock, 3)}
    assert got[7].name == "RPC_NO_SUCH_THING_ACK"
    assert got[7].error_code == ErrorCode.HANDLER_NOT_FOUND
    assert got[8].error_code == ErrorCode.INVALID_DATA
    assert got[9].error_code == ErrorCode.OK
    served.still_serves()


def test_a_table_that_does_not_exist_is_a_client_error(served: Served) -> None:
    with pytest.raises(DupkvError) as e:
        served.client.open_table("no_such_table")
    assert e.value.code == ErrorCode.OBJECT_NOT_FOUND
    assert "no_such_table" in str(e.value)
    served.still_serves()


def test_the_server_logged_what_it_refused(served: Served) -> None:
    log = served.cluster.replica_procs[0].log()
    for what in (
        "neither THFT nor HTTP",
        "header CRC mismatch",
        "exceeds",
        "unsupported THFT header version 7",
        "no handler for RPC_NO_SUCH_THING",
    ):
        assert what in log
