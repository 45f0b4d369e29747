"""rDSN's packed identifiers as they travel in Thrift i64 fields (pure).

- gpid        = (partition_index << 32) | app_id, each half a 32-bit two's complement
- rpc_address = (ipv4 << 32) | (port << 16) | 1   (type 1 = IPv4; 0 means "invalid address")

Thrift i64 is signed, so pack functions return a signed 64-bit integer (an address whose
first octet is 128 or more has the top bit set); unpack functions accept either sign.
"""

import ipaddress

from dupkv.base.errors import BadInput

INVALID_ADDRESS = 0
_ADDRESS_TYPE_IPV4 = 1
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


def _to_i64(v: int) -> int:
    v &= _U64
    return v - (1 << 64) if v >> 63 else v


def _to_i32(v: int) -> int:
    v &= _U32
    return v - (1 << 32) if v >> 31 else v


def pack_gpid(app_id: int, partition_index: int) -> int:
    return _to_i64(((partition_index & _U32) << 32) | (app_id & _U32))


def unpack_gpid(value: int) -> tuple[int, int]:
    """Return (app_id, partition_index)."""
    value &= _U64
    return _to_i32(value), _to_i32(value >> 32)


def format_gpid(value: int) -> str:
    """Pegasus prints a gpid as "<app_id>.<partition_index>", e.g. "2.5"."""
    app_id, pidx = unpack_gpid(value)
    return f"{app_id}.{pidx}"


def pack_address(host_port: str) -> int:
    """Pack "127.0.0.1:34601" into an rpc_address. Only IPv4 literals can be packed."""
    host, sep, port_text = host_port.rpartition(":")
    if not sep or not host:
        raise BadInput(f"address {host_port!r} is not of the form ipv4:port")
    try:
        ip = ipaddress.IPv4Address(host)
        port = int(port_text)
    except ValueError as e:
        raise BadInput(f"address {host_port!r} is not of the form ipv4:port ({e})") from e
    if not 0 < port < 65536:
        raise BadInput(f"address {host_port!r}: port must be in 1..65535")
    return _to_i64((int(ip) << 32) | (port << 16) | _ADDRESS_TYPE_IPV4)


def unpack_address(value: int) -> str | None:
    """Packed rpc_address -> "ip:port"; None for the invalid address (0)."""
    value &= _U64
    if value == INVALID_ADDRESS:
        return None
    if value & 0xFFFF != _ADDRESS_TYPE_IPV4:
        raise ValueError(f"rpc_address {value:#x} is not an IPv4 address (type {value & 0xFFFF})")
    ip = ipaddress.IPv4Address(value >> 32)
    port = (value >> 16) & 0xFFFF
    return f"{ip}:{port}"
