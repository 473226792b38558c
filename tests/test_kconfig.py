"""The kernel config is looked up option by option; it must read exactly what a full parse reads."""

from __future__ import annotations

import gzip

from hypothesis import given, settings
from hypothesis import strategies as st

from rawtrace.host import Host
from rawtrace.kconfig import KernelConfig, enabled, kernel_config, parse_config

_option = st.from_regex(r"CONFIG_[A-Z][A-Z0-9_]{0,12}", fullmatch=True)
_line = st.one_of(
    st.tuples(_option, st.sampled_from(["y", "m", '"a string"', "0x10", "42", ""])).map(lambda t: f"{t[0]}={t[1]}"),
    _option.map(lambda o: f"# {o} is not set"),
    st.sampled_from(["", "#", "# Automatically generated file; DO NOT EDIT.", "# General setup"]))


@settings(max_examples=200)
@given(st.lists(_line, max_size=30), st.booleans(), st.lists(_option, max_size=5))
def test_lookup_agrees_with_a_full_parse(lines, final_newline, asked):
    text = "\n".join(lines) + ("\n" if final_newline else "")
    full = parse_config(text)
    config = KernelConfig(text)
    for option in list(full) + asked:
        assert config.get(option) == full.get(option), option
        assert enabled(config, option) == enabled(full, option)


def test_prefixes_and_edges():
    config = KernelConfig("CONFIG_FOO_BAR=y\n# CONFIG_FOO is not set\nCONFIG_LAST=m")
    assert config.get("CONFIG_FOO") == "n" and config.get("CONFIG_FOO_BAR") == "y"
    assert config.get("CONFIG_LAST") == "m" and config.get("CONFIG_FO") is None
    assert config.get("CONFIG_NONE", "n") == "n" and "CONFIG_FOO" in config and "CONFIG_X" not in config


def test_kernel_config_from_a_tree(tmp_path):
    (tmp_path / "proc").mkdir()
    assert kernel_config(Host(tmp_path)) is None
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text("6.1.0-test\n")
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot/config-6.1.0-test").write_text("CONFIG_KPROBES=y\n")
    config, source = kernel_config(Host(tmp_path))
    assert source == "/boot/config-6.1.0-test" and enabled(config, "CONFIG_KPROBES")
    (tmp_path / "proc/config.gz").write_bytes(gzip.compress(b"# CONFIG_KPROBES is not set\n"))
    config, source = kernel_config(Host(tmp_path))
    assert source == "/proc/config.gz" and not enabled(config, "CONFIG_KPROBES")
