"""dupkv.client: the asyncio client of a dupkv (or Apache Pegasus) cluster, and its blocking
wrapper (`dupkv.client.blocking`).

    client = await Client.connect("127.0.0.1:34601,127.0.0.1:34602")
    table = await client.open_table("temp")
    await table.set(b"hk", b"sk", b"value", ttl_seconds=60)
    value = await table.get(b"hk", b"sk")

Modules: `types` (options, results, PegasusError), `ops` (validation and request building),
`routing` (partition map), `policy` (what to do after an RPC error) are pure; `table`,
`scanner`, `client` and `blocking` are the asyncio shell.
"""

from dupkv.client.client import Client
from dupkv.client.scanner import Scanner
from dupkv.client.table import Table
from dupkv.client.types import (
    CheckAndMutateResult,
    CheckAndSetResult,
    CheckType,
    FilterType,
    Mutate,
    MutateOperation,
    NodeInfo,
    PegasusError,
    ScanOptions,
    TableInfo,
)

__all__ = [
    "CheckAndMutateResult",
    "CheckAndSetResult",
    "CheckType",
    "Client",
    "FilterType",
    "Mutate",
    "MutateOperation",
    "NodeInfo",
    "PegasusError",
    "ScanOptions",
    "Scanner",
    "Table",
    "TableInfo",
]
