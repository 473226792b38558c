"""A short run of tools/fuzz.py (fixed seed, fixtures and built inputs only): no unexpected exception, no hang."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "fuzz.py"


def _fuzz():
    spec = importlib.util.spec_from_file_location("rawtrace_fuzz_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_fuzz_campaign_finds_nothing() -> None:
    fuzz = _fuzz()
    figures = fuzz.campaign(seed=7, count=4000, tracedat=None, out=None)
    assert figures["inputs"] == 4000 and not figures["real_inputs"]
    assert set(figures["per_target"]) == set(fuzz.WEIGHTS)
    assert figures["unexpected"] == 0, figures["unexpected_list"][:3]
    assert figures["hangs"] == 0, figures["hang_list"][:3]
    # Bad input is found and refused the expected way (the mutations do reach the parsers).
    assert figures["library_errors"] > 500


def test_the_campaign_notices_an_unexpected_exception(monkeypatch) -> None:
    fuzz = _fuzz()

    def broken(text: str):
        raise KeyError("boom")
    monkeypatch.setattr(fuzz, "parse_saved_cmdlines", broken)
    figures = fuzz.campaign(seed=3, count=300, tracedat=None, out=None)
    assert figures["unexpected"] >= 1 and "KeyError" in figures["unexpected_list"][0]["error"]


def test_the_campaign_interrupts_and_counts_a_hang(monkeypatch) -> None:
    fuzz = _fuzz()
    monkeypatch.setattr(fuzz, "HANG_SECONDS", 0.2)

    def spin(text: str):
        while True:
            pass
    monkeypatch.setattr(fuzz, "parse_saved_cmdlines", spin)
    figures = fuzz.campaign(seed=3, count=60, tracedat=None, out=None)
    assert figures["hangs"] >= 1 and figures["hang_list"][0]["target"] == "cmdlines"
    assert figures["unexpected"] == 0 and figures["inputs"] == 60
