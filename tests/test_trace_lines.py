"""Whole text lines in one operation (render_event.compile_line, TextRenderer.body_code, the trace tool's
batch loop) give exactly what the general path gives: the event's escaped body after the line's
prefix and time stamp, raw fields where the print fmt cannot be evaluated, the same fallback counts."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from test_ringbuf_support import PageBuilder, common

from rawtrace.cli import main
from rawtrace.emit import safe, text_timestamp
from rawtrace.parse.descriptors import FieldKind
from rawtrace.parse.format import parse_format
from rawtrace.parse.record import Event, compile_decoder
from rawtrace.parse.tracedat_write import TraceDatContent, write_tracedat
from rawtrace.printfmt import RENDER_ERRORS, TextRenderer, escaped_template
from rawtrace.render_event import compile_line, fields_body_code, fields_text

EVENTS = Path(__file__).parent / "fixtures" / "formats" / "6.18.44-fc-v769" / "events"
KALLSYMS = "ffffffff81000000 T _text\nffffffff81000100 T f\tmod\x1b\n"
PRINTK = '0xffffffff81000100 : "hello %d\\n"\n'
# Strings a traced program controls: escapes, bytes that are not UTF-8, backslashes, format characters.
STRINGS = ["bash", "a\x1b[2Jb", "caf\u00e9", "x\udcffy", "back\\slash", "tab\tnl\n", "", "zw\u200bsp", "%d%s",
           "long-name-exceeding-sixteen"]
HELPERS = {("task", "task_rename"), ("sched", "sched_process_exec"), ("sched", "sched_process_fork"),
           ("task", "task_newtask"), ("sched", "sched_process_exit")}


def fixture_formats() -> list:
    out = []
    for path in sorted(EVENTS.glob("*/*/format")):
        out.append((path.parent.parent.name, path.read_text()))
    return out


def payload(rng: random.Random, fmt, pid: int) -> bytes:
    """A record of `fmt` with random values: integers of every class, strings from STRINGS, locations."""
    fixed = max([f.offset + f.size for f in fmt.all_fields] + [8])
    out = bytearray(common("little", fmt.id, pid, rng.randrange(256), rng.randrange(256)) + bytes(fixed - 8))
    tail = bytearray()
    for f in fmt.fields:
        if f.kind in (FieldKind.INTEGER, FieldKind.POINTER) and f.size in (1, 2, 4, 8):
            top = (1 << (8 * f.size)) - 1
            value = rng.choice([0, 1, 7, 255, rng.randrange(top + 1), top, 0xFFFFFFFF81000100 & top, rng.randrange(64)])
            out[f.offset:f.offset + f.size] = value.to_bytes(f.size, "little")
        elif f.kind == FieldKind.STRING and f.size:
            text = rng.choice(STRINGS).encode("utf-8", "surrogateescape")[:f.size]
            out[f.offset:f.offset + len(text)] = text
        elif f.kind in FieldKind.DYNAMIC:
            if f.kind in (FieldKind.DATA_LOC_STRING, FieldKind.REL_LOC_STRING):
                data = rng.choice(STRINGS).encode("utf-8", "surrogateescape") + b"\0"
            else:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(17)))
            base = f.offset + 4 if f.kind in (FieldKind.REL_LOC_STRING, FieldKind.REL_LOC_ARRAY) else 0
            struct.pack_into("<I", out, f.offset, (len(data) << 16) | (fixed + len(tail) - base))
            tail += data
        elif f.kind == FieldKind.FLEX_STRING:
            tail += rng.choice(STRINGS).encode("utf-8", "surrogateescape") + b"\0"
        elif f.size:
            out[f.offset:f.offset + f.size] = bytes(rng.randrange(256) for _ in range(f.size))
    return bytes(out + tail)


def general_line(text: TextRenderer | None, prefix: str, event: Event, ns: bool = True) -> str:
    """The trace tool's line the general way (Trace._event_text)."""
    fmt = event.format
    body = text.body(event) if text is not None else fields_text(event.fields, fmt)
    return f"{prefix}{text_timestamp(event.ts, ns)}: {safe(fmt.system)}:{safe(fmt.name)}: {body}\n"


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("ns", [True, False])
def test_compiled_lines_equal_the_general_path_on_every_fixture_format(raw, ns):
    from rawtrace.printfmt import Symbols, parse_printk_formats
    rng = random.Random(7)
    fused = TextRenderer(parse_printk_formats(PRINTK), Symbols.from_kallsyms(KALLSYMS))
    general = TextRenderer(parse_printk_formats(PRINTK), Symbols.from_kallsyms(KALLSYMS))
    templates = 0
    for system, text in fixture_formats():
        fmt = parse_format(text, system=system, long_size=8)
        decode = compile_decoder(fmt)
        body = fields_body_code(fmt) if raw else fused.body_code(fmt)
        templates += body.values != ("_body(e)",) and not raw
        line = compile_line(fmt, body, ns)
        for n in range(60):
            data = payload(rng, fmt, rng.choice([0, 1, 300]))
            event = decode(data, 0, len(data), rng.choice([0, 499, 500, 10**9 + 123456789, 2**63]), 1)
            prefix = f"{safe(rng.choice(STRINGS)):>16}-{n:<7} [001] "
            try:
                mine = line(prefix, event)
            except RENDER_ERRORS:
                mine = general_line(None if raw else fused, prefix, event, ns)    # the tool's fallback
            assert mine == general_line(None if raw else general, prefix, event, ns), (fmt.full_name, event)
            assert mine.isprintable() or mine[:-1].isprintable()
    assert fused.fallbacks == general.fallbacks
    if not raw:
        assert templates >= 20 and fused.fallbacks       # most print fmts become one template


def test_escaped_templates_escape_strings_and_literals_but_never_move_padding():
    fields = ("\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n"
              "\tfield:int n;\toffset:24;\tsize:4;\tsigned:1;\n")

    def fmt(print_fmt: str):
        text = (f"name: ev\nID: 900\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
                f"\n{fields}\nprint fmt: {print_fmt}\n")
        return parse_format(text, system="test", long_size=8)

    found = escaped_template(fmt('"a\\tb %s %d%%", REC->comm, REC->n'))
    assert found.template == "a\\tb %s %d%%" and found.values[0].startswith("_safe_value(")
    line = compile_line(fmt('"a\\tb %s %d%%", REC->comm, REC->n'), found)
    ev = Event(1_500_000_000, 0, 5, 900, fmt('"x"'), {"comm": "e\x1bvil\udcfe", "n": -3})
    assert line("P ", ev) == "P 1.500000: test:ev: a\\tb e\\x1bvil\\xfe -3%\n"
    # Escaping a padded or cut string before padding it would print another width: no template.
    assert escaped_template(fmt('"%10s", REC->comm')) is None
    assert escaped_template(fmt('"%.3s", REC->comm')) is None
    assert escaped_template(fmt('"%c", REC->n')) is None
    text = TextRenderer()
    assert text.body_code(fmt('"%10s", REC->comm')).values == ("_body(e)",)
    assert TextRenderer(escape=False).body_code(fmt('"%d", REC->n')).values == ("_body(e)",)


def recording(path: Path, seed: int = 3, count: int = 1500, helpers: bool = True, lost: bool = False) -> Path:
    """A two-CPU trace.dat of raw_syscalls, syscalls, ftrace:print and (`helpers`) the task-name helper
    events (renames and execs change comms mid-stream), with hostile strings and saved comms; with
    `lost`, every fifth page says events were lost before it."""
    rng = random.Random(seed)
    wanted = (HELPERS if helpers else set()) | {
        ("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit"), ("ftrace", "print"),
        ("syscalls", "sys_enter_openat"), ("syscalls", "sys_exit_openat"), ("kmem", "kmalloc"),
        ("timer", "hrtimer_start"), ("sched", "sched_switch")}
    texts = [(s, t) for s, t in fixture_formats()
             if (s, parse_format(t, system=s, long_size=8).name) in wanted]
    fmts = [parse_format(t, system=s, long_size=8) for s, t in texts]
    data = {}
    for cpu in (0, 1):
        pages, builder, ts = [], PageBuilder(), 10**9 * (cpu + 1)
        start = ts
        made: list[bytes] = []
        for _ in range(count):
            # Half the records repeat an earlier one byte for byte, as a loop's calls do (the text
            # decoders' memo finds those).
            if made and rng.random() < 0.5:
                record = rng.choice(made[-50:])
            else:
                record = payload(rng, rng.choice(fmts), rng.choice([0, 1, 7, 300, 301]))
                made.append(record)
            if len(builder.data) + len(record) + 32 > 4096 - 16:
                pages.append(builder.build(start, missed=lost and len(pages) % 5 == 4))
                builder, start = PageBuilder(), ts
            delta = rng.choice([1, 499, 500, 1000, 123456])
            ts += delta
            builder.event(record, delta=delta)
        pages.append(builder.build(start))
        data[cpu] = b"".join(pages)
    write_tracedat(path, TraceDatContent(
        header_page=(EVENTS / "header_page").read_text(), header_event=(EVENTS / "header_event").read_text(),
        ftrace_formats=[t for s, t in texts if s == "ftrace"], event_formats=[(s, t) for s, t in texts if s != "ftrace"],
        cmdlines="300 app\n301 e\x1bvil\n", kallsyms=KALLSYMS, printk_formats=PRINTK, cpu_data=data))
    return path


@pytest.mark.parametrize("lost", [False, True])
@pytest.mark.parametrize("argv", [["--no-pair"], ["--no-pair", "--raw"], ["--no-pair", "-c", "999"], [],
                                  ["--no-pair", "-e", "raw_syscalls:*"], ["--no-pair", "-e", "kmem:*"]])
def test_whole_lines_from_the_decoders_equal_the_per_record_path(tmp_path, capsys, monkeypatch, argv, lost):
    """A recording without the task-name events: names cannot change, and the text decoders make whole
    lines (batches of them joined at once); with lost-event markers and other records in between."""
    from rawtrace.parse.record import DecoderSet
    from rawtrace.tracers.trace import Trace
    path = recording(tmp_path / "t.dat", seed=5, helpers=False, lost=lost)
    prefixed = []
    install = DecoderSet.install_text
    monkeypatch.setattr(DecoderSet, "install_text",
                        lambda self, *a, **k: prefixed.append(k.get("prefix") is not None) or install(self, *a, **k))
    assert main(["decode", *argv, str(path)]) == 0
    fast = capsys.readouterr()
    assert prefixed and all(prefixed)
    monkeypatch.setattr(Trace, "batch_handler", lambda self, deliver: None)
    assert main(["decode", *argv, str(path)]) == 0
    slow = capsys.readouterr()
    assert fast.out == slow.out and fast.err == slow.err
    assert "e\\x1bvil-301" in fast.out and "\x1b" not in fast.out
    assert ("LOST" in fast.out) == lost


@pytest.mark.parametrize("argv", [["--no-pair"], ["--no-pair", "--raw"], ["--no-pair", "--show-helpers"],
                                  ["--no-pair", "-c", "999"], ["-c", "321"], [], ["--no-pair", "-e", "raw_syscalls:*"]])
def test_decode_lines_equal_the_per_record_path(tmp_path, capsys, monkeypatch, argv):
    from rawtrace.parse.record import DecoderSet
    from rawtrace.tracers.trace import Trace
    path = recording(tmp_path / "t.dat")
    installed = []
    install = DecoderSet.install_text
    monkeypatch.setattr(DecoderSet, "install_text", lambda self, *a, **k: installed.append(install(self, *a, **k)))
    assert main(["decode", *argv, str(path)]) == 0
    fast = capsys.readouterr()
    # Text decoders serve the events that are only printed (none in --json; with pairing, not the
    # syscall events; the task-name events only with --show-helpers).
    # With --raw, all 8 events shown by on_event alone (the helpers also feed the task table); by print
    # fmt, the 4 whose print fmt is one template (ftrace:print, the syscalls:*openat pair and
    # hrtimer_start go the general way); paired, kmalloc and sched_switch.
    expected = 2 if "-e" in argv or "--no-pair" not in argv else (8 if "--raw" in argv else 4)
    assert installed == [True] * expected
    monkeypatch.setattr(Trace, "batch_handler", lambda self, deliver: None)
    assert main(["decode", *argv, str(path)]) == 0
    slow = capsys.readouterr()
    assert fast.out == slow.out and fast.err == slow.err
    assert "e\\x1bvil-301" in fast.out and "\x1b" not in fast.out
    if "--raw" not in argv and "-e" not in argv:
        assert "events shown as raw fields" in fast.err        # hrtimer_start's enum names: fallback


@pytest.mark.parametrize("raw", [False, True])
def test_text_decoders_give_the_compiled_lines_text_first_time_and_from_the_memo(raw):
    """Every fixture format: a text decoder's Rendered text is what compile_line() puts after the time
    stamp, for a record seen first and for the same bytes again (the memo), with the record's pid."""
    from rawtrace.parse.record import Rendered, compile_text_decoder
    from rawtrace.printfmt import Symbols, parse_printk_formats
    from rawtrace.render_event import text_template
    rng = random.Random(11)
    renderer = TextRenderer(parse_printk_formats(PRINTK), Symbols.from_kallsyms(KALLSYMS))
    checked = hits = 0
    for system, text in fixture_formats():
        fmt = parse_format(text, system=system, long_size=8)
        body = fields_body_code(fmt) if raw else renderer.body_code(fmt)
        if not body.pure:
            continue
        memo: dict = {}
        decode = compile_decoder(fmt)
        fused = compile_text_decoder(fmt, text_template(fmt, body), body.values, body.namespace, RENDER_ERRORS,
                                     memo=memo)
        plain = compile_text_decoder(fmt, text_template(fmt, body), body.values, body.namespace, RENDER_ERRORS)
        line = compile_line(fmt, body)
        for _ in range(20):
            data = payload(rng, fmt, rng.choice([0, 1, 300]))
            event = decode(data, 0, len(data), 10**9, 1)
            try:
                expected = line("", event).split(": ", 1)[1]
            except RENDER_ERRORS:
                expected = None
            for ts, cpu in ((10**9, 1), (5, 0)):          # the second time from the memo, at another time
                size = len(memo)
                for fn in (fused, plain):
                    got = fn(data, 0, len(data), ts, cpu)
                    if expected is None:
                        assert got.__class__ is Event and got == event._replace(ts=ts, cpu=cpu)
                        continue
                    assert got == Rendered(ts, cpu, event.pid, fmt.id, expected), fmt.full_name
                hits += expected is not None and ts == 5 and len(memo) == size
            checked += 1
    assert checked > 500 and hits > 400


def test_a_text_decoders_memo_keys_on_the_bytes_fields_are_read_from():
    """The memo's key: every payload byte a field is read from (common_flags and pid included), not the
    alignment padding after the last fixed field; the whole record when a field points into it."""
    from rawtrace.parse.record import compile_text_decoder
    fixed = parse_format("name: e\nID: 9\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
                         "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
                         "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
                         "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
                         "\tfield:int n;\toffset:8;\tsize:4;\tsigned:1;\n\nprint fmt: \"n=%d\", REC->n\n",
                         system="s", long_size=8)
    body = TextRenderer().body_code(fixed)
    memo: dict = {}
    decode = compile_text_decoder(fixed, "%d %d %d\n", ("f['n']", "e.pid", "e.flags"), body.namespace,
                                  RENDER_ERRORS, memo=memo)
    record = common("little", 9, 77, 1, 0) + struct.pack("<i", 5)
    assert decode(record + b"\xaa" * 4, 0, 16, 1, 0).text == "5 77 1\n"
    assert decode(record + b"\xbb" * 4, 0, 16, 2, 0).text == "5 77 1\n" and len(memo) == 1   # padding: a hit
    assert decode(common("little", 9, 78, 1, 0) + struct.pack("<i", 5), 0, 12, 3, 0).text == "5 78 1\n"
    assert decode(common("little", 9, 77, 3, 0) + struct.pack("<i", 5), 0, 12, 3, 0).text == "5 77 3\n"
    assert len(memo) == 3
    loc = parse_format("name: d\nID: 10\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
                       "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
                       "\tfield:__data_loc char[] s;\toffset:8;\tsize:4;\tsigned:0;\n\nprint fmt: \"%s\", __get_str(s)\n",
                       system="s", long_size=8)
    body = TextRenderer().body_code(loc)
    assert body.pure
    decode = compile_text_decoder(loc, text_template_of(loc, body), body.values, body.namespace, RENDER_ERRORS,
                                  memo={})
    head = common("little", 10, 1, 0, 0) + struct.pack("<I", (4 << 16) | 12)
    assert decode(head + b"abc\0", 0, 16, 1, 0).text.endswith(": abc\n")
    assert decode(head + b"xyz\0", 0, 16, 1, 0).text.endswith(": xyz\n")       # the string is in the key


def text_template_of(fmt, body):
    from rawtrace.render_event import text_template
    return text_template(fmt, body)


def test_a_text_decoder_drops_its_memo_when_it_does_not_pay_and_tries_again_later(monkeypatch):
    """Records that never repeat: after _MEMO_CHECK misses with few hits the plain text decoder takes
    over, for _MEMO_PAUSE records, then the memo is tried again; the texts never change."""
    from rawtrace.parse import record
    from rawtrace.parse.record import DecoderSet, Rendered
    monkeypatch.setattr(record, "_MEMO_CHECK", 8)
    monkeypatch.setattr(record, "_MEMO_PAUSE", 5)
    fmt = parse_format("name: e\nID: 9\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
                       "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
                       "\tfield:int n;\toffset:8;\tsize:4;\tsigned:1;\n\nprint fmt: \"n=%d\", REC->n\n",
                       system="s", long_size=8)
    decoders = DecoderSet({9: fmt})
    body = TextRenderer().body_code(fmt)
    assert decoders.install_text(9, text_template_of(fmt, body), body.values, body.namespace, RENDER_ERRORS)
    memoized = decoders.cache[9]

    def run(n):
        data = common("little", 9, 1, 0, 0) + struct.pack("<i", n)
        return decoders.decoder(9)(data, 0, 12, n, 0)
    assert [run(n).text for n in range(8)] == [f"s:e: n={n}\n" for n in range(8)]
    assert decoders.cache[9] is not memoized                                       # given up
    assert all(run(n) == Rendered(n, 0, 1, 9, f"s:e: n={n}\n") for n in range(8, 12))
    assert decoders.cache[9] is not memoized
    assert run(12).text == "s:e: n=12\n" and decoders.cache[9] is memoized       # the 5th: tried again
    # Repeats pay: 8 misses with 8 hits keep the memo.
    for n in range(100, 108):
        run(n), run(n)
    assert decoders.cache[9] is memoized
    assert not decoders.install_text(10, "%s", ("f['n']",), {}, RENDER_ERRORS)    # no such event
