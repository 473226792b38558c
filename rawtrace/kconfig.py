"""The running kernel's build configuration (/proc/config.gz or /boot/config-<release>), read through Host."""

from __future__ import annotations

import os

from rawtrace.host import Host


def kernel_release(host: Host) -> str:
    """`uname -r` of the kernel `host` runs: the live one's, or what a --root tree recorded ("unknown")."""
    if host.is_live:
        return os.uname().release
    return (host.read_text("/proc/sys/kernel/osrelease") or "unknown").strip()


def parse_config(text: str) -> dict[str, str]:
    """{CONFIG_X: value} from a kernel .config text; options marked `is not set` map to "n"."""
    values = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            key, _, value = line.partition("=")
            values[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            values[line[2:-11]] = "n"
    return values


class KernelConfig:
    """A kernel .config looked up option by option: a config has thousands of lines and a caller asks for a
    handful, so each is found in the text when first asked for (options marked `is not set` read "n")."""

    __slots__ = ("_found", "_text")

    def __init__(self, text: str) -> None:
        self._text = "\n" + text if not text.startswith("\n") else text
        self._found: dict[str, str | None] = {}

    def get(self, option: str, default: str | None = None) -> str | None:
        if option not in self._found:
            self._found[option] = self._lookup(option)
        value = self._found[option]
        return default if value is None else value

    def _lookup(self, option: str) -> str | None:
        # The last line about an option wins, as in a full parse (and in Kconfig).
        text = self._text
        assigned = text.rfind(f"\n{option}=")
        unset_line = f"\n# {option} is not set"
        unset = text.rfind(unset_line)
        while unset >= 0 and text[unset + len(unset_line):unset + len(unset_line) + 1] not in ("\n", ""):
            unset = text.rfind(unset_line, 0, unset)
        if assigned < 0 and unset < 0:
            return None
        if unset > assigned:
            return "n"
        start = assigned + len(option) + 2
        end = text.find("\n", start)
        return text[start:end if end >= 0 else len(text)]

    def __contains__(self, option: str) -> bool:
        return self.get(option) is not None


def kernel_config(host: Host, release: str | None = None) -> tuple[KernelConfig, str] | None:
    """(options, the file they came from) for the kernel of `host`, or None when neither
    /proc/config.gz (CONFIG_IKCONFIG_PROC) nor /boot/config-<release> can be read."""
    import zlib
    try:
        data = host.path("/proc/config.gz").read_bytes()
        return KernelConfig(zlib.decompress(data, 47).decode(errors="replace")), "/proc/config.gz"
    except (OSError, zlib.error):
        pass
    boot = f"/boot/config-{release or kernel_release(host)}"
    text = host.read_text(boot)
    return (KernelConfig(text), boot) if text is not None else None


def enabled(config: KernelConfig | dict[str, str], option: str) -> bool:
    """Whether a config builds `option` in (y) or as a module (m)."""
    return config.get(option, "n") not in ("n", "")
