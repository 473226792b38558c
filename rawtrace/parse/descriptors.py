"""Typed descriptors for tracefs format files and the ring-buffer headers (data only, no parsing)."""

from __future__ import annotations

from dataclasses import dataclass, field


class FieldKind:
    """What a field holds. Kinds are strings so that they print and serialise as themselves."""

    INTEGER = "integer"                  # scalar of size 1/2/4/8 (signedness from `signed:`)
    POINTER = "pointer"                  # an address (kernel or user), size 4/8, shown as hex
    ARRAY = "array"                      # fixed array of scalars: element_size * count == size
    STRING = "string"                    # fixed char array, NUL-padded (char comm[16])
    FLEX_ARRAY = "flex_array"            # T name[] with size 0: runs to the end of the record
    FLEX_STRING = "flex_string"          # char buf[] with size 0 (ftrace/print)
    DATA_LOC_STRING = "data_loc_string"  # __data_loc char[]: u32 (len << 16 | offset from record start)
    DATA_LOC_ARRAY = "data_loc_array"    # __data_loc T[] (and __data_loc cpumask_t)
    REL_LOC_STRING = "rel_loc_string"    # __rel_loc char[]: offset relative to the end of the u32
    REL_LOC_ARRAY = "rel_loc_array"
    OPAQUE = "opaque"                    # recognised as a field but not as a scalar (odd size): raw bytes

    ALL = (INTEGER, POINTER, ARRAY, STRING, FLEX_ARRAY, FLEX_STRING, DATA_LOC_STRING, DATA_LOC_ARRAY,
           REL_LOC_STRING, REL_LOC_ARRAY, OPAQUE)
    DYNAMIC = (DATA_LOC_STRING, DATA_LOC_ARRAY, REL_LOC_STRING, REL_LOC_ARRAY)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str                  # the C type as the kernel wrote it, without the name ("char[16]", "__data_loc char[]")
    offset: int                # from the start of the record payload (where common_type is)
    size: int                  # bytes, as `size:` says (trusted over the type text)
    signed: bool
    common: bool               # part of struct trace_entry (before the blank line)
    kind: str                  # one of FieldKind
    element_type: str | None = None   # arrays and dynamic fields: the element's C type
    element_size: int | None = None   # arrays and dynamic fields: bytes per element
    count: int | None = None          # fixed arrays: number of elements (size // element_size)
    notes: tuple[str, ...] = ()       # anomalies tolerated and flagged: "count disagrees with size", "overlaps x"


@dataclass(frozen=True, slots=True)
class EventFormat:
    system: str
    name: str
    id: int
    common_fields: tuple[Field, ...]
    fields: tuple[Field, ...]
    print_fmt: str                     # verbatim
    print_fmt_string: str | None = None  # the quoted format string, unescaped as C would
    print_fmt_args: tuple[str, ...] = ()  # the argument expressions, split at top-level commas
    notes: tuple[str, ...] = ()

    @property
    def all_fields(self) -> tuple[Field, ...]:
        return self.common_fields + self.fields

    @property
    def full_name(self) -> str:
        return f"{self.system}:{self.name}"

    def field(self, name: str) -> Field | None:
        for f in self.all_fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True, slots=True)
class HeaderPage:
    """Layout of one ring-buffer sub-buffer, from events/header_page."""

    timestamp_offset: int
    timestamp_size: int
    commit_offset: int
    commit_size: int           # the kernel's long size (8 or 4)
    data_offset: int
    data_size: int             # usable data bytes per sub-buffer

    @property
    def subbuf_size(self) -> int:
        return self.data_offset + self.data_size


@dataclass(frozen=True, slots=True)
class HeaderEvent:
    """The compressed entry header, from events/header_event."""

    type_len_bits: int = 5
    time_delta_bits: int = 27
    array_bits: int = 32
    padding_type: int = 29
    time_extend_type: int = 30
    time_stamp_type: int = 31
    data_max_type_len: int = 28
    extra: dict = field(default_factory=dict, compare=False)
