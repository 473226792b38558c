"""The one output layer: events, syscalls, lost markers and tool records as text or NDJSON (one schema).

Every NDJSON line is an object whose `type` says what it is:

* `meta`    — first line: `tool`, `source` (live, trace.dat, pages), `clock`, `ts_unit` ("s", or "count"
  for counter clocks, whose `ts` are raw counts), and what is traced.
* `event`   — `ts`, `cpu`, `pid` (process), `tid` (thread), `comm`, `event` ("system:name"), `fields`.
* `syscall` — `ts` (entry), `cpu`, `pid`, `tid`, `comm`, `syscall`, `nr`, `args` (name → raw value),
  `ret`, `errno` (name, failed calls), `duration` (s), `status` (complete, unfinished, resumed,
  noreturn), `note`, `strings` (user strings fetched for the call), `text` (the strace-like line).
* `lost`    — `ts`, `cpu`, `count` (-1: unknown), `source` ("page" or "stats").
* `summary` — last line: events, lost, duration, per-CPU overruns, and what the tool counted.
* tool records (`syscount`, ...) — documented with each tool.

`ts` is float seconds on the trace clock for nanosecond clocks. Strings are the kernel's bytes: text that
was not UTF-8 shows as `\\xNN`; in text output control characters are escaped too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from rawtrace.memo import memo_lines, memo_namespace
from rawtrace.output import json_text
from rawtrace.parse.record import TIMESTAMP_TEMPLATE
from rawtrace.render_event import compile_fields_json, json_value, line_prefix, prefixes
from rawtrace.render_event import safe_text as safe
from rawtrace.syscalls.constants import errno_name

_encode_basestring = None


def json_str(text: str) -> str:
    """A JSON string literal for text that may carry surrogate-escaped bytes."""
    global _encode_basestring
    if _encode_basestring is None:
        from json.encoder import encode_basestring
        _encode_basestring = encode_basestring
    if not text.isascii():
        text = json_text(text)
    return _encode_basestring(text)


_dumps = None


def dumps(obj: Any) -> str:
    """Compact JSON text of an object already made JSON-safe."""
    global _dumps
    if _dumps is None:
        import json
        _dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
    return _dumps(obj)


def text_timestamp(ts: int, ns: bool) -> str:
    """seconds.microseconds, rounded to the nearest microsecond as the kernel's trace file and
    trace-cmd report print it; the raw count for counter clocks."""
    if not ns:
        return str(ts)
    return TIMESTAMP_TEMPLATE % divmod((ts + 500) // 1000, 1000000)


_DURATIONS: dict[int, str] = {}          # microseconds -> duration_text(), for durations under a second


def duration_text(ns: int) -> str:
    """A call's duration as strace -T shows it, seconds.microseconds, rounded to the nearest microsecond
    as text_timestamp() rounds (half up); remembered per microsecond below a second."""
    if ns < 0:
        return "-" + duration_text(-ns)
    us = (ns + 500) // 1000
    found = _DURATIONS.get(us)
    if found is None:
        found = TIMESTAMP_TEMPLATE % divmod(us, 1000000)
        if us < 1000000 and len(_DURATIONS) < 65536:
            _DURATIONS[us] = found
    return found


def seconds_json(ns: int) -> str:
    """Nanoseconds as exact decimal seconds for JSON (`12.000000345`): no float rounding, also for clocks
    whose values would need more than a double's 15-16 digits."""
    if ns >= 0:
        return "%d.%09d" % divmod(ns, 1_000_000_000)  # noqa: UP031 - the fastest exact form
    return "-" + seconds_json(-ns)


class _FieldsJson:
    """Compiled per event format: fields dict → the JSON object text of `fields` (cached by content)."""

    def __init__(self) -> None:
        self._cache: dict[tuple, Any] = {}

    def renderer(self, fmt):
        key = (fmt.system, fmt.name, fmt.id, tuple((f.name, f.kind, f.size, f.count) for f in fmt.fields))
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            found = self._cache[key] = compile_fields_json(fmt)
        return found


class Emitter:
    """Writes one tool's output: NDJSON lines (`json=True`) or text, to `out`; notes and the status
    line to `err`. Tools never write to stdout themselves."""

    def __init__(self, json: bool = False, out=None, err=None, ns: bool = True) -> None:
        self.json = json
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.ns = ns
        # Lines are gathered and written once per batch of records (drain()): a write() per line would
        # cost about as much as making the line.
        self._pending: list[str] = []
        self.write = self._pending.append
        self._fd = None
        try:
            self.out.flush()
            self._fd = self.out.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None            # not a real file (a StringIO in tests): its own write()
        self._fields_json = _FieldsJson()
        self._comm_json: dict[str, str] = {}
        self._event_heads: dict[tuple, str] = {}
        self._signature_json: dict = {}
        self._fast_texts: dict[int, tuple] = {}
        self._complete_tables: dict[int, tuple] = {}
        self._status_shown = False
        self._tty = hasattr(self.err, "isatty") and self.err.isatty()

    # -- generic records -----------------------------------------------------------------------
    def record(self, kind: str, obj: dict) -> None:
        """One NDJSON record of a tool's own type (values are made JSON-safe here)."""
        self.write('{"type":' + json_str(kind) + "," + dumps(json_value(obj))[1:] + "\n")

    def meta(self, tool: str, source: str, clock: str, **info: Any) -> None:
        if self.json:
            self.record("meta", {"tool": tool, "source": source, "clock": clock,
                                 "ts_unit": "s" if self.ns else "count", **info})

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def seconds(self, ts: int):
        return ts / 1e9 if self.ns else ts

    # -- events ---------------------------------------------------------------------------------
    def comm_json(self, comm: str) -> str:
        found = self._comm_json.get(comm)
        if found is None:
            if len(self._comm_json) > 8192:
                self._comm_json.clear()
            found = self._comm_json[comm] = json_str(comm)
        return found

    def event_json(self, rec, pid: int, comm: str) -> str:
        fmt = rec.format
        head = self._event_heads.get((fmt.system, fmt.name, fmt.id))
        if head is None:
            head = self._event_heads[(fmt.system, fmt.name, fmt.id)] = \
                ',"event":' + json_str(f"{fmt.system}:{fmt.name}") + ',"fields":'
        ts = rec.ts
        stamp = seconds_json(ts) if self.ns else str(ts)
        return (f'{{"type":"event","ts":{stamp},"cpu":{rec.cpu},"pid":{pid},"tid":{rec.pid},'
                f'"comm":{self.comm_json(comm)}{head}{self._fields_json.renderer(fmt)(rec.fields)}}}')

    def lost(self, rec, source: str = "page") -> None:
        if self.json:
            self.write(f'{{"type":"lost","ts":{self._stamp_json(rec.ts)},"cpu":{rec.cpu},"count":{rec.count},'
                       f'"source":"{source}"}}\n')
        else:
            count = "an unknown number of" if rec.count < 0 else str(rec.count)
            self.write(f"LOST {count} events on cpu {rec.cpu} before {text_timestamp(rec.ts, self.ns)} "
                       f"({source})\n")

    def unknown(self, rec) -> None:
        reason = getattr(rec, "reason", None)
        if self.json:
            obj = {"ts": self.seconds(rec.ts), "cpu": rec.cpu, "unknown_id": rec.id, "data": rec.data.hex()}
            if reason:
                obj["reason"] = reason
            self.record("unknown", obj)
        else:
            what = f"event id {rec.id} undecoded ({safe(reason)})" if reason else f"unknown event id {rec.id}"
            self.write(f"{'<...>':>16}-{'?':<7} [{rec.cpu:03d}] {text_timestamp(rec.ts, self.ns)}: {what}: "
                       f"{len(rec.data)} bytes {rec.data.hex()}\n")

    def _stamp_json(self, ts: int) -> str:
        return seconds_json(ts) if self.ns else str(ts)

    # -- syscalls -------------------------------------------------------------------------------
    def syscall_json(self, call, formatter, comm_json: str | None = None) -> str:
        """The `syscall` record of one call (built from per-signature pieces made once)."""
        sig = call.signature
        # By identity: a Signature's hash would walk its params on every call; the joiner keeps one
        # Signature per syscall, and the entry keeps it alive so its id is not reused.
        pieces = self._signature_json.get(id(sig))
        if pieces is None or pieces[2] is not sig or pieces[4] is not formatter:
            pieces = self._signature_pieces(sig, formatter)
        values = call.values
        ret = call.ret
        comm = comm_json or self._comm_json.get(call.comm) or self.comm_json(call.comm)
        if call.status == "complete" and ret.__class__ is int and 0 <= ret and self.ns and not call.strings \
                and not call.note:
            # The common case: a finished call with integer arguments that did not fail, by one compiled
            # function (arguments and text together) or one % operation.
            try:
                if pieces[5] is not None and ret < pieces[6]:
                    return pieces[5][0](call, comm)
                ts = call.ts
                if pieces[3] is not None and call.exit_ts >= ts:    # (a negative one as seconds_json has it)
                    return pieces[3] % (*divmod(ts, 1_000_000_000), call.cpu, call.pid, call.tid, comm, *values,
                                        ret, *divmod(call.exit_ts - ts, 1_000_000_000),
                                        json_str(self.call_text(call, formatter)))
            except Exception:  # noqa: BLE001, S110 - a string or other non-integer value: the general way
                pass
        cpu = call.cpu if call.cpu is not None else call.exit_cpu
        ts = call.ts if call.ts is not None else call.exit_ts
        parts = [(f'{{"type":"syscall","ts":{seconds_json(ts) if self.ns else ts},"cpu":{cpu},'
                  f'"pid":{call.pid},"tid":{call.tid},"comm":'), comm, pieces[0]]
        if values is not None:
            text = None
            if pieces[1] is not None:
                try:
                    text = pieces[1] % values
                except TypeError:           # a string or other non-integer value: the general way
                    text = None
            parts.append(text if text is not None else ',"args":' + _args_json(sig.params, values))
        if ret is not None:
            parts.append(f',"ret":{ret}')
            if -4095 <= ret < 0:
                name = errno_name(formatter.arch, -ret)
                parts.append(',"errno":' + (f'"{name}"' if name else str(-ret)))
        if call.exit_ts is not None and call.ts is not None:
            duration = call.exit_ts - call.ts
            parts.append(f',"duration":{seconds_json(duration) if self.ns else duration}')
        parts.append(',"status":"' + call.status + '"')
        if call.note:
            parts.append(',"note":' + json_str(call.note))
        if call.strings:
            parts.append(',"strings":' + dumps(json_value(call.strings)))
        parts.append(',"text":' + json_str(call.text(formatter)) + "}")
        return "".join(parts)

    def _signature_pieces(self, sig, formatter) -> tuple:
        """(syscall+nr text, args % template, the signature, whole-record % template, the formatter, the
        compiled (record, line) functions or None, the plain-return limit) for one signature."""
        if len(self._signature_json) > 65536:
            self._signature_json.clear()
        names = [p[0] for p in sig.params]
        head = ',"syscall":' + json_str(sig.name) + ',"nr":' + ("null" if sig.nr is None else str(sig.nr))
        template = whole = compiled = None
        if all(n.isidentifier() and n.isascii() for n in names):
            template = ',"args":{' + ",".join(f'"{n}":%d' for n in names) + "}"
            whole = ('{"type":"syscall","ts":%d.%09d,"cpu":%d,"pid":%d,"tid":%d,"comm":%s'
                     + head.replace("%", "%%") + template + ',"ret":%d,"duration":%d.%09d,"status":"complete",'
                     '"text":%s}')
            compiled = self._compile_json(sig, formatter, head, self._comm_json.get, self.comm_json)
        pieces = self._signature_json[id(sig)] = (head, template, sig, whole, formatter, compiled,
                                                  formatter.plain_return_limit)
        return pieces

    @staticmethod
    def _compile_json(sig, formatter, head: str, comms: Callable, comm_json: Callable):
        """(fn(call, comm JSON) -> the record, fn(ts, exit_ts, cpu, pid, tid, comm JSON, values, ret) -> the
        record and a newline, the same fn of the comm as it is (complete_line()'s)) of a complete call with
        a plain return, by the formatter's compiled text (which needs no JSON escaping); None if the
        signature's text cannot be compiled. The record is made by f-strings (a third cheaper than the same
        % template), of at most _FSTRING_PARTS parts each (past 30 parts CPython builds an f-string by a
        list and a join, slower than %); its arguments, return and text are remembered per (values, ret).
        A value of a field that is not a plain scalar is formatted with `:d`, so that anything but an
        integer raises, as %d would, and the caller takes the general way."""
        text = formatter.fast_text(sig.name, sig.params)
        if text is None or not (sig.name.isascii() and sig.name.replace("_", "a").isalnum()):
            return None               # (the text holds the name: a recording's may need escaping)
        count = len(sig.params)
        # What depends on the call's values and return only, as two segments around the duration, made
        # by SEGMENTS and remembered per (values, ret) while that pays (rawtrace.memo). Parts: (literal
        # text, None) or (None, Python expression).
        first: list[tuple[str | None, str | None]] = [(head + ',"args":{', None)]
        for i, (name, ctype) in enumerate(sig.params):
            first += [(("," if i else "") + f'"{name}":', None), (None, f"v{i}" + ("" if _plain_scalar(ctype) else ":d"))]
        first += [('},"ret":', None), (None, "ret"), (',"duration":', None)]
        second = [(',"status":"complete","text":"', None), (None, "TEXT(values, ret)"), ('"}\n', None)]
        # (an unpacking that raises, as the % template did, on values of another count, or None)
        unpack = "    " + ("".join(f"v{i}, " for i in range(count)) if count else "() ") + "= values"
        whole = [('{"type":"syscall","ts":', None), (None, "digits[:-9]"), (".", None), (None, "digits[-9:]"),
                 (',"cpu":', None), (None, "cpu"), (',"pid":', None), (None, "pid"), (',"tid":', None),
                 (None, "tid"), (',"comm":', None), (None, "comm"), (None, "seg[0]"), (None, "took"), (None, "seg[1]")]
        body = [*memo_lines("seg", "(values, ret)", "SEGMENTS(values, ret)"),
                # The duration as seconds_json() gives it; below a second by padding its digits (a third
                # of the cost of a :09d format of the remainder).
                "        took = exit_ts - ts",
                "        if 0 <= took < 1000000000:", "            took = '0.' + str(took).zfill(9)",
                "        else:", "            took = SECONDS(took)",
                # The time stamp's seconds and nanoseconds by slicing its digits (cheaper than divmod).
                "        digits = str(ts)", "        if len(digits) < 10:", "            digits = digits.rjust(10, '0')",
                "        return " + _fstrings(whole)]
        source = "\n".join([
            "def SEGMENTS(values, ret):", unpack,
            f"    return {_fstrings(first)}, {_fstrings(second)}",
            "def make():",
            "    hits = misses = off = 0",
            "    def line(ts, exit_ts, cpu, pid, tid, comm, values, ret):",
            "        nonlocal hits, misses, off", *body,
            "    def complete(ts, exit_ts, cpu, pid, tid, comm, values, ret):",
            "        nonlocal hits, misses, off",
            "        comm = COMMS(comm) or COMM_JSON(comm)", *body,
            "    return line, complete",
            "line, complete = make()",
            "def record(call, comm):",
            "    return line(call.ts, call.exit_ts, call.cpu, call.pid, call.tid, comm, call.values, call.ret)[:-1]"]) \
            + "\n"
        env = {"TEXT": text, "COMMS": comms, "COMM_JSON": comm_json, "SECONDS": seconds_json, **memo_namespace()}
        exec(compile(source, "<syscall record>", "exec"), env)  # noqa: S102 - built from our own pieces only
        return env["record"], env["line"], env["complete"]

    def complete_line(self, formatter) -> Callable | None:
        """fn(ts, exit_ts, cpu, pid, tid, comm, sig, values, ret) -> the line (and its newline) of a complete
        call without strings or note, by the compiled function of its signature; None where that is not
        the case it makes (a failed or large return, no compiled text, a value of another type): then the
        caller takes syscall_lines()'s general way. None unless the clock counts nanoseconds."""
        if not self.ns:
            return None
        table = self._complete_tables.get(id(formatter))
        if table is None or table[0] is not formatter:
            table = self._complete_tables[id(formatter)] = (formatter, {})
        entries = table[1]
        if self.json:
            def make(sig) -> tuple:
                pieces = self._signature_pieces(sig, formatter)
                fn = pieces[5][2] if pieces[5] is not None else None
                return self._keep_entry(entries, sig, fn, pieces[6])
        else:
            known_prefix = prefixes.get

            def make(sig) -> tuple:
                plain = sig.name.isascii() and sig.name.replace("_", "a").isalnum()
                text = formatter.fast_text(sig.name, sig.params) if plain else None
                fn = None
                if text is not None:
                    env = {"TEXT": text, "PREFIX": known_prefix, "LINE_PREFIX": line_prefix,
                           "DURATIONS": _DURATIONS.get, "DURATION": duration_text}
                    source = ("def complete(ts, exit_ts, cpu, pid, tid, comm, values, ret):\n"
                              "    prefix = PREFIX((comm, tid, cpu)) or LINE_PREFIX(comm, tid, cpu)\n"
                              # text_timestamp(), by slicing the digits
                              "    digits = str(ts + 500)\n    if len(digits) < 10:\n"
                              "        digits = digits.rjust(10, '0')\n"
                              # duration_text(), by its table where it has the value
                              "    took = exit_ts - ts\n"
                              "    duration = DURATIONS((took + 500) // 1000) if took >= 0 else None\n"
                              "    if duration is None:\n        duration = DURATION(took)\n"
                              "    return f'{prefix}{digits[:-9]}.{digits[-9:-3]}: {TEXT(values, ret)} "
                              "<{duration}>\\n'\n")
                    exec(compile(source, "<syscall line>", "exec"), env)  # noqa: S102 - our own pieces only
                    fn = env["complete"]
                return self._keep_entry(entries, sig, fn, formatter.plain_return_limit)
        get = entries.get

        # An entry is (sig, fn or None, plain-return limit), by signature identity.
        def complete(ts, exit_ts, cpu, pid, tid, comm, sig, values, ret) -> str | None:
            if ret.__class__ is int and ret >= 0:
                entry = get(id(sig))
                if entry is None or entry[0] is not sig:
                    entry = make(sig)
                if entry[1] is not None and ret < entry[2]:
                    try:
                        return entry[1](ts, exit_ts, cpu, pid, tid, comm, values, ret)
                    except Exception:  # noqa: BLE001, S110 - a value of another type: the general way
                        pass
            return None
        return complete

    def complete_writer(self, formatter, fallback: Callable) -> tuple[Callable, Callable[[], int]] | None:
        """(writer, count) for SyscallJoiner.complete: writer(ts, exit_ts, cpu, exit_cpu, tid, pid, comm, sig,
        values, ret) writes complete_line()'s line, or hands its arguments to `fallback` where that makes
        none; count() gives the lines it wrote. None where complete_line() is None."""
        complete = self.complete_line(formatter)
        if complete is None:
            return None
        write = self.write
        written = 0

        def writer(ts, exit_ts, cpu, exit_cpu, tid, pid, comm, sig, values, ret) -> None:
            nonlocal written
            line = complete(ts, exit_ts, cpu, pid, tid, comm, sig, values, ret)
            if line is None:
                fallback(ts, exit_ts, cpu, exit_cpu, tid, pid, comm, sig, values, ret)
            else:
                write(line)
                written += 1

        def count() -> int:
            return written
        return writer, count

    @staticmethod
    def _keep_entry(entries: dict, sig, fn, limit) -> tuple:
        if len(entries) > 65536:
            entries.clear()
        entry = entries[id(sig)] = (sig, fn, limit)
        return entry

    def syscall_lines(self, formatter) -> Callable:
        """fn(call) -> the call's line and a newline: syscall_json() in JSON, else syscall_line(). The
        common case (a complete call with a plain return, a nanosecond clock, a compiled text) is made by
        complete_line() from the unpacked record, without the general functions' attribute lookups."""
        general = self.syscall_json if self.json else self.syscall_line
        complete = self.complete_line(formatter)

        def general_line(call) -> str:
            return general(call, formatter) + "\n"
        if complete is None:
            return general_line

        def line(call) -> str:
            status, ts, exit_ts, cpu, _exit_cpu, tid, pid, comm, sig, values, ret, note, strings = call
            if status == "complete" and not strings and not note:
                text = complete(ts, exit_ts, cpu, pid, tid, comm, sig, values, ret)
                if text is not None:
                    return text
            return general(call, formatter) + "\n"
        return line

    def call_text(self, call, formatter) -> str:
        """call.text(formatter), by the formatter's compiled text of the signature where it has one (cached
        here by signature identity: the common case then costs one lookup and one call)."""
        ret = call.ret
        if call.status == "complete" and ret.__class__ is int and 0 <= ret and not call.strings \
                and call.values is not None:
            sig = call.signature
            fast = self._fast_texts.get(id(sig))
            if fast is None or fast[0] is not sig or fast[1] is not formatter:
                if len(self._fast_texts) > 65536:
                    self._fast_texts.clear()
                # The compiled text is table names and digits but for the syscall's name, which in a
                # recording could need escaping: such a name takes the general way (which escapes).
                plain = sig.name.isascii() and sig.name.replace("_", "a").isalnum()
                fast = self._fast_texts[id(sig)] = (sig, formatter,
                                                    formatter.fast_text(sig.name, sig.params) if plain else None,
                                                    formatter.plain_return_limit)
            if fast[2] is not None and ret < fast[3]:
                try:
                    return fast[2](call.values, ret)
                except Exception:  # noqa: BLE001, S110 - a value of another type: the general way says how
                    pass
        return call.text(formatter)

    def syscall_line(self, call, formatter) -> str:
        """`comm-tid [cpu] seconds: openat(...) = 3 <0.000012>` (strace -f -tt -T like)."""
        ts = call.ts
        exit_ts = call.exit_ts
        if ts is None:
            ts, cpu = exit_ts, call.exit_cpu
        else:
            cpu = call.cpu
        key = (call.comm, call.tid, cpu)
        prefix = prefixes.get(key) or line_prefix(*key)
        text = safe(self.call_text(call, formatter))
        if not self.ns:
            tail = f" <{exit_ts - ts}>" if exit_ts is not None and call.ts is not None else ""
            return f"{prefix}{ts}: {text}{tail}"
        stamp = text_timestamp(ts, True)
        if exit_ts is not None and call.ts is not None:
            return f"{prefix}{stamp}: {text} <{duration_text(exit_ts - ts)}>"
        return f"{prefix}{stamp}: {text}"

    # -- stderr ---------------------------------------------------------------------------------
    def note(self, text: str, prefix: bool = True) -> None:
        """One line on stderr (`prefix`: as `rawtrace: ...`; the start and summary lines go without)."""
        self.drain()
        self.out.flush()
        self.clear_status()
        self.err.write(f"rawtrace: {text}\n" if prefix else text + "\n")
        self.err.flush()

    def status(self, text: str) -> None:
        """A status line on stderr, rewritten in place on a terminal."""
        if self._tty:
            self.err.write("\r\x1b[K" + text)
            self._status_shown = True
        else:
            self.err.write(text + "\n")
        self.err.flush()

    def wants_status(self, summary_tool: bool) -> bool:
        """A status line only on a terminal, and not where it would mix with the events on the same one."""
        if not self._tty:
            return False
        out_tty = hasattr(self.out, "isatty") and self.out.isatty()
        return summary_tool or not out_tty

    def clear_status(self) -> None:
        if self._status_shown:
            self.err.write("\r\x1b[K")
            self._status_shown = False

    def drain(self) -> None:
        """Write what the tools produced since the last drain.

        Straight to the file descriptor, in a loop over partial writes: a signal arriving while a large
        write blocks on a full pipe must not lose or cut lines (with the io stack it did)."""
        pending = self._pending
        if not pending:
            return
        text = "".join(pending)
        pending.clear()
        fd = self._fd
        if fd is None:
            self.out.write(text)
            return
        data = memoryview(text.encode("utf-8", "backslashreplace"))
        while data:
            written = os.write(fd, data)
            data = data[written:]

    def flush(self) -> None:
        self.drain()
        self.out.flush()

    # -- tables ---------------------------------------------------------------------------------
    def table(self, kind: str, headers: list[str], rows: list[list], records: list[dict] | None = None) -> None:
        """A summary table: text columns, or one NDJSON record of type `kind` per row."""
        if self.json:
            for obj in records if records is not None else [dict(zip(headers, row)) for row in rows]:
                self.record(kind, obj)
            return
        from rawtrace.output import table_text
        self.write(table_text(rows, headers) + "\n")


# Parts per f-string of a compiled record (CPython joins a list for more than 30).
_FSTRING_PARTS = 28


def _fstrings(parts: list[tuple[str | None, str | None]]) -> str:
    """A Python expression concatenating f-strings of at most _FSTRING_PARTS parts each, from parts that are
    (literal text, None) or (None, Python expression)."""
    chunks = []
    for start in range(0, len(parts), _FSTRING_PARTS):
        body = "".join(lit.replace("{", "{{").replace("}", "}}") if lit is not None else "{" + expr + "}"
                       for lit, expr in parts[start:start + _FSTRING_PARTS])
        chunks.append(f"f{body!r}")
    return " + ".join(chunks)


def _plain_scalar(ctype: str) -> bool:
    """Whether a field of this C type decodes to an int only (no array, string or dynamic field)."""
    return "[" not in ctype and "__data_loc" not in ctype and "__rel_loc" not in ctype


def _args_json(params, values) -> str:
    parts = []
    for (name, _ctype), value in zip(params, values):
        if value.__class__ is int:
            parts.append(f'"{name}":{value}')
        else:
            parts.append(json_str(name) + ":" + dumps(json_value(value)))
    return "{" + ",".join(parts) + "}"
