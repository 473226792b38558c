"""The fast table renderer must match tabulate byte for byte; escaping must neutralise control characters."""

import string

from hypothesis import given, settings
from hypothesis import strategies as st
from tabulate import tabulate

from rawtrace.output import _simple_table, escape, replacing_file, table_text

cell = st.text(alphabet=string.ascii_letters + string.digits + "_-./:*()|, ", max_size=12).map(str.strip)


@settings(max_examples=300)
@given(st.integers(1, 5).flatmap(
    lambda n: st.tuples(st.lists(cell.filter(bool), min_size=n, max_size=n),
                        st.lists(st.lists(cell, min_size=n, max_size=n), max_size=8))))
def test_simple_table_matches_tabulate(data):
    headers, rows = data
    expected = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    assert _simple_table(rows, headers) == expected
    assert table_text(rows, headers) == expected


def test_non_ascii_cells_go_through_tabulate():
    rows = [["日本", "x"], ["a", None]]
    assert table_text(rows, ["h1", "h2"]) == tabulate(
        [["日本", "x"], ["a", ""]], headers=["h1", "h2"], tablefmt="simple", disable_numparse=True)


def test_escape_control_characters():
    assert escape("ok") == "ok"
    assert escape("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert escape("tab\there\\") == "tab\\there\\\\"
    assert escape("\x7f") == "\\x7f"


def test_replacing_file_replaces_on_success_and_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.dat"
    target.write_text("old")
    try:
        with replacing_file(target, "w") as f:
            f.write("half")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.dat"]
    with replacing_file(target, "w") as f:
        f.write("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.dat"]
