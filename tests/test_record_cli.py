"""`rawtrace record` input checks: one-line errors and exit status 2 before anything is traced, --help."""

from __future__ import annotations

import pytest

from rawtrace.cli import main


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(["record", *argv])
    return code, capsys.readouterr().err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["record", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "trace-cmd report" in out and "-- COMMAND" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["-o", "{tmp}/a.dat"], "name at least one EVENT"),
    (["-o", "{tmp}/a.dat", "raw_syscalls:*", "-i", "x.dat"], "record traces live"),
    (["-o", "{tmp}/a.dat", "raw_syscalls:*", "-t", "5"], "cannot select threads"),
    (["-o", "{tmp}/missing/a.dat", "raw_syscalls:*"], "no directory"),
    (["-o", "{tmp}/exists.dat", "raw_syscalls:*"], "exists (use -f"),
    (["-o", "{tmp}/a.dat", "raw_syscalls:*", "--", "no-such-command-rt"], "command not found"),
    (["-o", "{tmp}/a.dat", "raw_syscalls:*", "-n", "a-name-longer-than-fifteen"], "15"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "exists.dat").write_text("x")
    code, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert message in err and err.startswith("rawtrace: ") and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.dat"]     # nothing left behind


def test_command_arguments_are_not_taken_for_options(tmp_path):
    from rawtrace.cli import build_command_parser, record
    parser = build_command_parser("record", record)
    args = parser.parse_args(["-o", "f", "raw_syscalls:*", "-d", "3", "--", "sh", "-c", "ls -d /"])
    assert args.events == ["raw_syscalls:*"] and args.command == ["sh", "-c", "ls -d /"] and args.duration == 3
    args = parser.parse_args(["-o", "f", "sched:*"])
    assert args.command == []
