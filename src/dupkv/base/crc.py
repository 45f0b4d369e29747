"""Table-driven reflected CRCs (pure): the one algorithm behind Pegasus's CRC-64 (routing)
and rDSN's CRC-32C (THFT headers), which differ only in width and polynomial.

Both use initial value ~0 and final xor ~0, processing a byte at a time:
`crc = table[(crc ^ byte) & 0xff] ^ (crc >> 8)`.
"""

from collections.abc import Callable


def reflected_table(poly_reflected: int) -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly_reflected if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


def reflected_crc(poly_reflected: int, width: int) -> Callable[[bytes, int], int]:
    """A CRC function `crc(data, previous=0)` for a reflected polynomial of `width` bits."""
    table = reflected_table(poly_reflected)
    mask = (1 << width) - 1

    def crc(data: bytes, previous: int = 0) -> int:
        value = ~previous & mask
        for b in data:
            value = table[(value ^ b) & 0xFF] ^ (value >> 8)
        return ~value & mask

    return crc
