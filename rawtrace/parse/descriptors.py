"""Typed descriptors for tracefs format files and the ring-buffer headers (data only, no parsing)."""

from __future__ import annotations

from collections import namedtuple

# Named tuples rather than frozen dataclasses: as immutable, and importing dataclasses (with inspect)
# or typing would cost `rawtrace format` a third of its start-up. `replace()` is `._replace()`.


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


class Field(namedtuple("Field", "name type offset size signed common kind element_type element_size count notes",
                       defaults=(None, None, None, ()))):
    """One field of an event format.

    name; type: the C type as the kernel wrote it, without the name ("char[16]", "__data_loc char[]");
    offset: from the start of the record payload (where common_type is); size: bytes, as `size:` says
    (trusted over the type text); signed; common: part of struct trace_entry (before the blank line);
    kind: one of FieldKind; element_type / element_size: of arrays and dynamic fields; count: elements of
    a fixed array (size // element_size); notes: anomalies tolerated and flagged ("count disagrees with
    size", "overlaps x")."""

    __slots__ = ()


class EventFormat(namedtuple("EventFormat", "system name id common_fields fields print_fmt print_fmt_string "
                                            "print_fmt_args notes", defaults=(None, (), ()))):
    """One event's format: system, name, id, common_fields and fields (tuples of Field), print_fmt
    (verbatim), print_fmt_string (the quoted format string, unescaped as C would), print_fmt_args (the
    argument expressions, split at top-level commas), notes."""

    __slots__ = ()

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


class HeaderPage(namedtuple("HeaderPage", "timestamp_offset timestamp_size commit_offset commit_size data_offset "
                                          "data_size")):
    """Layout of one ring-buffer sub-buffer, from events/header_page (commit_size is the kernel's long
    size, 8 or 4; data_size the usable data bytes per sub-buffer)."""

    __slots__ = ()

    @property
    def subbuf_size(self) -> int:
        return self.data_offset + self.data_size


class HeaderEvent(namedtuple("HeaderEvent", "type_len_bits time_delta_bits array_bits padding_type time_extend_type "
                                            "time_stamp_type data_max_type_len extra",
                             defaults=(5, 27, 32, 29, 30, 31, 28, ()))):
    """The compressed entry header, from events/header_event (the ring buffer's fixed ABI values by
    default); `extra`: other `name : type == N` lines, as (name, value) pairs."""

    __slots__ = ()
