"""trace.dat files built byte by byte, independently of rawtrace's writer: for the reader's tests and the
fuzzing campaign (tools/fuzz.py). Layouts as trace-cmd writes them (lib/trace-cmd/trace-output.c)."""

from __future__ import annotations

import struct
import zlib


def _sized(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


def tracedat_v6(header_page: str, header_event: str, formats: list[tuple[str, str]], cmdlines: str,
                cpu_pages: list[bytes]) -> bytes:
    head = b"\x17\x08\x44tracing6\0" + bytes([0, 8]) + struct.pack("<I", 4096)
    head += b"header_page\0" + _sized(header_page.encode()) + b"header_event\0" + _sized(header_event.encode())
    head += struct.pack("<I", 0)
    systems: dict[str, list[str]] = {}
    for system, text in formats:
        systems.setdefault(system, []).append(text)
    head += struct.pack("<I", len(systems))
    for system, texts in systems.items():
        head += system.encode() + b"\0" + struct.pack("<I", len(texts)) + b"".join(_sized(t.encode()) for t in texts)
    head += struct.pack("<II", 0, 0) + _sized(cmdlines.encode()) + struct.pack("<I", len(cpu_pages))
    clock = b"local [global] counter\0"
    head += b"options  \0" + struct.pack("<HI", 4, len(clock)) + clock + struct.pack("<H", 0) + b"flyrecord\0"
    offset = -(-(len(head) + 16 * len(cpu_pages)) // 4096) * 4096
    table, body = b"", b""
    for data in cpu_pages:
        table += struct.pack("<QQ", offset + len(body), len(data))
        body += data + bytes(-len(data) % 4096)
    out = head + table
    return out + bytes(offset - len(out)) + body


def tracedat_v7(header_page: str, header_event: str, formats: list[tuple[str, str]], cmdlines: str,
                cpu_pages: list[bytes], compress: bool | str) -> bytes:
    """A v7 file; `compress` True or "zlib" compresses its sections with zlib, "zstd" with the zstd program."""
    if compress is True:
        compress = "zlib"
    method = {"zlib": b"zlib\0" + b"1.2\0", "zstd": b"zstd\0" + b"1.5\0"}.get(compress or "", b"none\0\0")

    def pack(content: bytes) -> bytes:
        if compress == "zstd":
            import subprocess
            return subprocess.run(["zstd", "-q", "-c"], input=content, capture_output=True, check=True).stdout
        return zlib.compress(content)
    head = b"\x17\x08\x44tracing7\0" + bytes([0, 8]) + struct.pack("<I", 4096) + method
    out = bytearray(head + bytes(8))

    def section(section_id: int, content: bytes, may_compress: bool = True) -> int:
        at = len(out)
        flags = 0
        if compress and may_compress:
            packed = pack(content)
            content = struct.pack("<II", len(packed), len(content)) + packed
            flags = 1
        out.extend(struct.pack("<HHIQ", section_id, flags, 0, len(content)) + content)
        return at

    header = b"header_page\0" + _sized(header_page.encode()) + b"header_event\0" + _sized(header_event.encode())
    systems: dict[str, list[str]] = {}
    for system, text in formats:
        systems.setdefault(system, []).append(text)
    events = struct.pack("<I", len(systems)) + b"".join(
        system.encode() + b"\0" + struct.pack("<I", len(texts)) + b"".join(_sized(t.encode()) for t in texts)
        for system, texts in systems.items())
    sections = {16: section(16, header), 18: section(18, events), 21: section(21, _sized(cmdlines.encode()))}
    cpus = []
    for cpu, data in enumerate(cpu_pages):
        out.extend(bytes(-len(out) % 4096))
        at = len(out)
        if compress:
            chunks = [data[i:i + 40960] for i in range(0, len(data), 40960)]
            blob = struct.pack("<I", len(chunks))
            for chunk in chunks:
                packed = pack(chunk)
                blob += struct.pack("<II", len(packed), len(chunk)) + packed
            out.extend(blob)
            cpus.append((cpu, at, len(blob) - 4))
        else:
            out.extend(data)
            cpus.append((cpu, at, len(data)))
    buffer = struct.pack("<Q", 0) + b"\0" + b"local\0" + struct.pack("<II", 4096, len(cpus))
    for cpu, at, size in cpus:
        buffer += struct.pack("<IQQ", cpu, at, size)
    options = b"".join(struct.pack("<HIQ", sid, 8, at) for sid, at in sections.items())
    clock = b"[local] global\0"
    options += struct.pack("<HI", 4, len(clock)) + clock + struct.pack("<HI", 3, len(buffer)) + buffer
    options += struct.pack("<HIQ", 0, 8, 0)
    first = section(0, options, may_compress=False)
    out[len(head):len(head) + 8] = struct.pack("<Q", first)
    return bytes(out)
