"""The client's public data types (pure): options, results, the data-RPC error.

Names follow Pegasus's Java/Python clients where a user sees them (`ScanOptions`,
`CheckAndSetResult`, `check_value_exist`, ...). Enums carry the wire values of
`rrdb.thrift`, so a plain int is accepted wherever one of them is.
"""

from dataclasses import dataclass, field
from enum import IntEnum

from dupkv.base.errors import BadInput, DupkvError, RocksStatus

Bytes = bytes | bytearray | memoryview | str


def as_bytes(value: Bytes, what: str) -> bytes:
    """A key or value as bytes; a str is taken as UTF-8 (for shells and demos)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise BadInput(f"{what} must be bytes or str, not {type(value).__name__}")


class FilterType(IntEnum):
    """Key filters of multi_get and scanners (`filter_type`)."""

    NO_FILTER = 0
    MATCH_ANYWHERE = 1
    MATCH_PREFIX = 2
    MATCH_POSTFIX = 3


class CheckType(IntEnum):
    """The check of check_and_set / check_and_mutate (`cas_check_type`)."""

    NO_CHECK = 0
    VALUE_NOT_EXIST = 1
    VALUE_NOT_EXIST_OR_EMPTY = 2
    VALUE_EXIST = 3
    VALUE_NOT_EMPTY = 4
    VALUE_MATCH_ANYWHERE = 5
    VALUE_MATCH_PREFIX = 6
    VALUE_MATCH_POSTFIX = 7
    VALUE_BYTES_LESS = 8
    VALUE_BYTES_LESS_OR_EQUAL = 9
    VALUE_BYTES_EQUAL = 10
    VALUE_BYTES_GREATER_OR_EQUAL = 11
    VALUE_BYTES_GREATER = 12
    VALUE_INT_LESS = 13
    VALUE_INT_LESS_OR_EQUAL = 14
    VALUE_INT_EQUAL = 15
    VALUE_INT_GREATER_OR_EQUAL = 16
    VALUE_INT_GREATER = 17


class MutateOperation(IntEnum):
    PUT = 0
    DELETE = 1


class PegasusError(DupkvError):
    """A data RPC answered with a RocksDB status other than the ones its op treats as results.

    `code` is the C++ client's name for it (`PERR_INVALID_ARGUMENT`, ...), `status` the
    RocksStatus, `op` the client operation, `where` the partition and server that answered.
    """

    def __init__(self, status: int, op: str, where: str = "") -> None:
        try:
            self.status: RocksStatus | int = RocksStatus(status)
            name = self.status.name
        except ValueError:
            self.status, name = status, "UNKNOWN"
        self.op = op
        self.where = where
        at = f" from {where}" if where else ""
        super().__init__(f"PERR_{name}", f"{op} failed with rocksdb status {status} ({name}){at}")


@dataclass(frozen=True)
class ScanOptions:
    """Options of `get_scanner` / `get_unordered_scanners` (Java `ScanOptions` defaults).

    `timeout_ms` bounds each RPC of the scan (get_scanner, every scan batch), not the scan.
    With `only_return_count` the server sends counts instead of records: use
    `Scanner.count()` (iterating such a scanner yields nothing).
    """

    timeout_ms: int = 5000
    batch_size: int = 100
    start_inclusive: bool = True
    stop_inclusive: bool = False
    hash_key_filter_type: int = FilterType.NO_FILTER
    hash_key_filter_pattern: bytes = b""
    sort_key_filter_type: int = FilterType.NO_FILTER
    sort_key_filter_pattern: bytes = b""
    no_value: bool = False
    validate_partition_hash: bool = True
    only_return_count: bool = False


@dataclass(frozen=True)
class Mutate:
    """One mutation of check_and_mutate; build it with `Mutate.put` or `Mutate.delete`."""

    operation: MutateOperation
    sort_key: bytes
    value: bytes = b""
    ttl_seconds: int = 0

    @classmethod
    def put(cls, sort_key: Bytes, value: Bytes, ttl_seconds: int = 0) -> "Mutate":
        return cls(
            MutateOperation.PUT,
            as_bytes(sort_key, "sort_key"),
            as_bytes(value, "value"),
            ttl_seconds,
        )

    @classmethod
    def delete(cls, sort_key: Bytes) -> "Mutate":
        return cls(MutateOperation.DELETE, as_bytes(sort_key, "sort_key"))


@dataclass(frozen=True)
class CheckAndSetResult:
    set_succeed: bool
    check_value_returned: bool = False
    check_value_exist: bool = False
    check_value: bytes | None = None


@dataclass(frozen=True)
class CheckAndMutateResult:
    mutate_succeed: bool
    check_value_returned: bool = False
    check_value_exist: bool = False
    check_value: bytes | None = None


@dataclass(frozen=True)
class TableInfo:
    """One table as `list_tables` reports it; `status` as the shell prints it (AVAILABLE)."""

    app_id: int
    name: str
    status: str
    partition_count: int
    replica_count: int
    envs: dict[str, str] = field(default_factory=dict)
    create_second: int = 0
    drop_second: int = 0
    expire_second: int = 0
    duplicating: bool = False
    atomic_idempotent: bool = False


@dataclass(frozen=True)
class NodeInfo:
    """One replica server as `list_nodes` reports it; `status` is ALIVE or UNALIVE."""

    address: str
    status: str
