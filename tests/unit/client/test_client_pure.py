"""The client's pure cores: retry policy, routing, validation and request building."""

import pytest

from dupkv.base.crc64 import crc64
from dupkv.base.errors import BadInput, ErrorCode
from dupkv.base.timeutil import EPOCH_BEGIN
from dupkv.client import ops, policy
from dupkv.client.policy import Action
from dupkv.client.routing import Route, leader_hint, route_from_query_cfg
from dupkv.client.types import CheckType, Mutate, PegasusError
from dupkv.rpc.idl_meta import meta
from dupkv.rpc.ids import pack_address, pack_gpid
from dupkv.storage.schema import encode_key

NOW = EPOCH_BEGIN + 1000.5  # Pegasus epoch second 1000


@pytest.mark.parametrize(
    "error,idempotent,action",
    [
        (ErrorCode.INVALID_STATE, True, Action.REFRESH),
        (ErrorCode.OBJECT_NOT_FOUND, False, Action.REFRESH),
        (ErrorCode.NETWORK_FAILURE, False, Action.REFRESH),
        ("ERR_PARENT_PARTITION_MISUSED", True, Action.REFRESH),
        (ErrorCode.HANDLER_NOT_FOUND, True, Action.REFRESH),
        (ErrorCode.SESSION_RESET, True, Action.REFRESH),
        (ErrorCode.SESSION_RESET, False, Action.FAIL),  # incr may have been applied
        (ErrorCode.TIMEOUT, True, Action.RETRY),
        (ErrorCode.TIMEOUT, False, Action.FAIL),
        (ErrorCode.BUSY, False, Action.BACKOFF),
        ("ERR_SPLITTING", True, Action.BACKOFF),
        (ErrorCode.INVALID_DATA, True, Action.FAIL),
        (ErrorCode.OPERATION_DISABLED, True, Action.FAIL),
    ],
)
def test_policy_table(error: str, idempotent: bool, action: Action) -> None:
    assert policy.decide(error, 1, idempotent=idempotent, rand=0.5).action is action


def test_policy_refresh_then_backoff_and_bounds() -> None:
    first = policy.decide(ErrorCode.INVALID_STATE, 1, idempotent=True, rand=0.0)
    assert first.delay_ms == 0  # first refresh: retry at once
    later = [
        policy.decide(ErrorCode.INVALID_STATE, n, idempotent=True, rand=0.999).delay_ms
        for n in range(2, 12)
    ]
    assert later == sorted(later) and later[0] > 0 and later[-1] <= policy.BACKOFF_MAX_MS
    busy = policy.decide(ErrorCode.BUSY, 1, idempotent=True, rand=0.0)
    assert busy.delay_ms == policy.BACKOFF_BASE_MS / 2
    last = policy.decide(ErrorCode.TIMEOUT, policy.MAX_ATTEMPTS, idempotent=True, rand=0.0)
    assert last.action is Action.FAIL
    reset = policy.decide(ErrorCode.SESSION_RESET, 1, idempotent=False, rand=0.0)
    assert reset.route_stale  # failing, but the next op re-queries the route first


def query_cfg(count: int, primaries: dict[int, str], ballots: dict[int, int] | None = None):
    return meta.query_cfg_response(
        err=ErrorCode.OK,
        app_id=7,
        partition_count=count,
        partitions=[
            meta.partition_configuration(
                pid=pack_gpid(7, i),
                ballot=(ballots or {}).get(i, 3),
                primary=pack_address(primaries[i]) if i in primaries else 0,
            )
            for i in range(count)
        ],
    )


def test_route_from_query_cfg_and_hash_routing() -> None:
    route = route_from_query_cfg(query_cfg(4, {0: "10.0.0.1:1", 1: "10.0.0.2:2"}), "t")
    assert route.app_id == 7 and route.partition_count == 4
    assert route.primaries == ("10.0.0.1:1", "10.0.0.2:2", None, None)
    assert route.missing_primaries() == [2, 3]
    h = crc64(b"a")
    target = route.for_hash(h)
    assert (target.partition_index, target.partition_hash) == (h % 4, h)
    whole = route.for_partition(1)
    assert (whole.partition_index, whole.partition_hash, whole.address) == (1, 1, "10.0.0.2:2")


def test_route_sends_to_the_parent_of_a_child_not_ready() -> None:
    primaries = {i: f"10.0.0.{i + 1}:1" for i in range(4)}
    route = route_from_query_cfg(query_cfg(4, primaries, ballots={3: -1}), "t")
    h = next(h for h in range(100) if h % 4 == 3)
    assert route.for_hash(h).partition_index == 1
    assert route.for_hash(h).address == "10.0.0.2:1"


def test_leader_hint() -> None:
    resp = meta.query_cfg_response(
        err=ErrorCode.FORWARD_TO_OTHERS,
        partitions=[meta.partition_configuration(primary=pack_address("10.1.1.1:34601"))],
    )
    assert leader_hint(resp) == "10.1.1.1:34601"
    assert leader_hint(meta.query_cfg_response(err=ErrorCode.FORWARD_TO_OTHERS)) is None


def test_empty_route_is_an_operating_error() -> None:
    with pytest.raises(Exception, match="0 partitions"):
        route_from_query_cfg(meta.query_cfg_response(err="ERR_OK", partition_count=0), "t")
    assert isinstance(Route(1, 1, (None,), (0,)).for_hash(5).address, type(None))


def test_hash_key_rules() -> None:
    assert ops.hash_key("hk", "set") == b"hk"
    assert ops.hash_key(b"", "get", allow_empty=True) == b""
    with pytest.raises(BadInput, match="shorter than 65535"):
        ops.hash_key(b"x" * 65535, "set", allow_empty=True)
    ops.hash_key(b"x" * 65534, "set")
    with pytest.raises(BadInput, match="multi_get: hash key must not be empty"):
        ops.hash_key(b"", "multi_get")
    with pytest.raises(BadInput, match="bytes or str"):
        ops.hash_key(5, "set")  # type: ignore[arg-type]


def test_ttl_mapping() -> None:
    assert ops.expire_ts(0, NOW, "set") == 0
    assert ops.expire_ts(60, NOW, "set") == 1060
    with pytest.raises(BadInput, match="accepted: 0 \\(no TTL\\) or more"):
        ops.expire_ts(-1, NOW, "set")
    assert ops.incr_expire_ts(0, NOW) == 0
    assert ops.incr_expire_ts(-1, NOW) == -1
    assert ops.incr_expire_ts(5, NOW) == 1005
    with pytest.raises(BadInput, match="-1 \\(clear it\\)"):
        ops.incr_expire_ts(-2, NOW)


def test_check_and_set_request() -> None:
    same = ops.check_and_set_request(b"h", b"c", CheckType.VALUE_NOT_EXIST, b"", b"c", b"v", 0, 0)
    assert same.set_diff_sort_key is False and same.check_type == 1
    other = ops.check_and_set_request(b"h", b"c", 3, b"", b"s", b"v", 9, True)
    assert other.set_diff_sort_key is True and other.set_sort_key == b"s"
    assert other.return_check_value is True and other.set_expire_ts_seconds == 9
    with pytest.raises(BadInput, match="0..17"):
        ops.check_and_set_request(b"h", b"c", 18, b"", b"c", b"v", 0, False)


def test_check_and_mutate_request() -> None:
    req = ops.check_and_mutate_request(
        b"h", b"c", 0, b"", [Mutate.put("a", "1", ttl_seconds=10), Mutate.delete(b"b")], False, NOW
    )
    put, delete = req.mutate_list
    assert (put.operation, put.sort_key, put.value, put.set_expire_ts_seconds) == (
        0,
        b"a",
        b"1",
        1010,
    )
    assert (delete.operation, delete.sort_key, delete.value) == (1, b"b", b"")
    with pytest.raises(BadInput, match="at least one Mutate"):
        ops.check_and_mutate_request(b"h", b"c", 0, b"", [], False, NOW)


def test_multi_set_pairs() -> None:
    assert ops.kv_pairs({"a": "1", b"b": b"2"}) == [(b"a", b"1"), (b"b", b"2")]
    assert ops.kv_pairs([(b"a", b"1")]) == [(b"a", b"1")]
    with pytest.raises(BadInput, match="at least one"):
        ops.kv_pairs({})
    with pytest.raises(BadInput, match="not a \\(sort_key, value\\) pair"):
        ops.kv_pairs([b"a"])


def test_scan_range() -> None:
    rng = ops.scan_range(
        b"h",
        b"",
        b"",
        start_inclusive=True,
        stop_inclusive=True,
        sort_key_filter_type=0,
        sort_key_filter_pattern=b"",
    )
    assert rng == (encode_key(b"h", b""), b"\x00\x01i", True, False)  # end of the hash key
    prefixed = ops.scan_range(
        b"h",
        b"",
        b"z",
        start_inclusive=False,
        stop_inclusive=True,
        sort_key_filter_type=2,
        sort_key_filter_pattern=b"ab",
    )
    assert prefixed == (encode_key(b"h", b"ab"), encode_key(b"h", b"ac"), True, False)
    empty = ops.scan_range(
        b"h",
        b"b",
        b"a",
        start_inclusive=True,
        stop_inclusive=True,
        sort_key_filter_type=0,
        sort_key_filter_pattern=b"",
    )
    assert empty is None


def test_pegasus_error_message() -> None:
    e = PegasusError(4, "incr", "3.1 at 127.0.0.1:1")
    assert e.code == "PERR_INVALID_ARGUMENT" and e.status == 4 and e.op == "incr"
    assert "incr failed with rocksdb status 4 (INVALID_ARGUMENT) from 3.1 at 127.0.0.1:1" in str(e)
    assert PegasusError(99, "get").code == "PERR_UNKNOWN"
