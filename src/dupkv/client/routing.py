"""A table's partition map and which partition serves a key (pure core).

Built from a query_cfg response: app_id, partition count, and per partition its primary
("ip:port", or None while it has none) and ballot. A key goes to partition
`crc64(hash_key or sort_key) % partition_count` (unsigned); the request header carries
`app_id`, that `partition_index` and the 64-bit hash as `partition_hash`. While a partition
split is under way, a child whose ballot is still invalid is not serving yet: its requests go
to the parent, `pidx - partition_count / 2`, as Pegasus's clients do.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

from dupkv.base.crc64 import partition_index
from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.rpc.ids import unpack_address, unpack_gpid

INVALID_BALLOT = -1


class Target(NamedTuple):
    """Where one request goes: header fields and the server address (None: no primary).

    A tuple: one is made per request, and a frozen dataclass costs three times as much."""

    app_id: int
    partition_index: int
    partition_hash: int
    address: str | None


@dataclass(frozen=True)
class Route:
    app_id: int
    partition_count: int
    primaries: tuple[str | None, ...]
    ballots: tuple[int, ...]

    def _serving(self, pidx: int) -> int:
        n = self.partition_count
        if n >= 2 and pidx >= n // 2 and self.ballots[pidx] == INVALID_BALLOT:
            return pidx - n // 2
        return pidx

    def for_hash(self, key_hash: int) -> Target:
        """Target of a key with this partition hash."""
        pidx = self._serving(partition_index(key_hash, self.partition_count))
        return Target(self.app_id, pidx, key_hash, self.primaries[pidx])

    def for_partition(self, pidx: int) -> Target:
        """Target of a whole-partition request (full scans): partition_hash = the index."""
        if not 0 <= pidx < self.partition_count:
            raise IndexError(f"partition {pidx} of a table with {self.partition_count}")
        return Target(self.app_id, pidx, pidx, self.primaries[pidx])

    def missing_primaries(self) -> list[int]:
        return [i for i, p in enumerate(self.primaries) if p is None]


def route_from_query_cfg(resp: Any, table: str) -> Route:
    """The route in a query_cfg response whose `err` is ERR_OK; raises DupkvError
    (ERR_INVALID_DATA) if the response cannot describe a table."""
    count = resp.partition_count or 0
    if count <= 0:
        raise DupkvError(
            ErrorCode.INVALID_DATA, f"query_cfg of table {table!r} says {count} partitions"
        )
    primaries: list[str | None] = [None] * count
    ballots = [0] * count  # a partition left out is not mistaken for a splitting child
    for pc in resp.partitions or []:
        _, pidx = unpack_gpid(pc.pid or 0)
        if not 0 <= pidx < count:
            continue
        try:
            primaries[pidx] = unpack_address(pc.primary or 0)
        except ValueError:
            primaries[pidx] = None
        ballots[pidx] = pc.ballot if pc.ballot is not None else 0
    return Route(resp.app_id or 0, count, tuple(primaries), tuple(ballots))


def leader_hint(resp: Any) -> str | None:
    """The meta leader a follower names in `partitions[0].primary` (query_cfg), if any."""
    partitions = getattr(resp, "partitions", None)
    if not partitions:
        return None
    try:
        return unpack_address(partitions[0].primary or 0)
    except ValueError:
        return None
