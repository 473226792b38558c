"""Enum constants and struct sizes from raw BTF data (/sys/kernel/btf/vmlinux), for print fmts that name them."""

from __future__ import annotations

import struct

from rawtrace.errors import DecodeError

BTF_MAGIC = 0xEB9F

# BTF kinds (include/uapi/linux/btf.h) -> bytes of kind-specific data: (fixed, per vlen entry).
_KIND_DATA = {
    1: (4, 0),     # INT
    2: (0, 0),     # PTR
    3: (12, 0),    # ARRAY
    4: (0, 12),    # STRUCT
    5: (0, 12),    # UNION
    6: (0, 8),     # ENUM
    7: (0, 0),     # FWD
    8: (0, 0),     # TYPEDEF
    9: (0, 0),     # VOLATILE
    10: (0, 0),    # CONST
    11: (0, 0),    # RESTRICT
    12: (0, 0),    # FUNC
    13: (0, 8),    # FUNC_PROTO
    14: (4, 0),    # VAR
    15: (0, 12),   # DATASEC
    16: (0, 0),    # FLOAT
    17: (4, 0),    # DECL_TAG
    18: (0, 0),    # TYPE_TAG
    19: (0, 12),   # ENUM64
}
_ENUM, _ENUM64 = 6, 19


def enum_constants(data: bytes) -> dict[str, int]:
    """Every enumerator of every enum in a raw BTF blob. The first definition of a name wins."""
    return read_btf(data)[0]


def read_btf(data: bytes) -> tuple[dict[str, int], dict[str, int]]:
    """(enumerator name -> value, "struct NAME" -> size in bytes) of a raw BTF blob."""
    if len(data) < 24:
        raise DecodeError("BTF data too short")
    magic = struct.unpack_from("<H", data)[0]
    order = "<" if magic == BTF_MAGIC else ">"
    if struct.unpack_from(order + "H", data)[0] != BTF_MAGIC:
        raise DecodeError("not BTF data (bad magic)")
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(order + "5I", data, 4)
    types_at = hdr_len + type_off
    strings_at = hdr_len + str_off
    if types_at + type_len > len(data) or strings_at + str_len > len(data):
        raise DecodeError("BTF sections lie beyond the data")
    strings = data[strings_at:strings_at + str_len]

    def name(off: int) -> str:
        end = strings.find(b"\0", off)
        return strings[off:end if end >= 0 else len(strings)].decode("ascii", "replace")

    head = struct.Struct(order + "3I")
    entry32 = struct.Struct(order + "Ii")
    entry64 = struct.Struct(order + "3I")
    found: dict[str, int] = {}
    sizes: dict[str, int] = {}
    pos = types_at
    end = types_at + type_len
    while pos + 12 <= end:
        name_off0, info, size = head.unpack_from(data, pos)
        pos += 12
        vlen = info & 0xFFFF
        kind = (info >> 24) & 0x1F
        layout = _KIND_DATA.get(kind)
        if layout is None:
            raise DecodeError(f"unknown BTF kind {kind} at {pos - 12:#x}")
        if kind in (4, 5) and name_off0:
            sizes.setdefault(("struct " if kind == 4 else "union ") + name(name_off0), size)
        if kind == _ENUM:
            signed = bool(info >> 31)
            for i in range(vlen):
                name_off, value = entry32.unpack_from(data, pos + 8 * i)
                found.setdefault(name(name_off), value if signed else value & 0xFFFFFFFF)
        elif kind == _ENUM64:
            signed = bool(info >> 31)
            for i in range(vlen):
                name_off, low, high = entry64.unpack_from(data, pos + 12 * i)
                value = high << 32 | low
                if signed and value >> 63:
                    value -= 1 << 64
                found.setdefault(name(name_off), value)
        pos += layout[0] + layout[1] * vlen
    return found, sizes
