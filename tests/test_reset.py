"""`rawtrace reset` against a fake tracefs and a fake /proc: only dead owners' leftovers go."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rawtrace.cli import main
from rawtrace.tracefs.instance import Owner, instance_name, owner_alive, parse_owner, process_starttime

STAT = "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 {start} 3133440 406 0 0\n"


def fake_tree(tmp_path):
    root = tmp_path / "root"
    tracefs = tmp_path / "tracefs"
    for name in ("rawtrace-100-5000", "rawtrace-200-6000", "rawtrace-300-7000", "trace-cmd-x",
                 "rawtrace-notours"):
        (tracefs / "instances" / name).mkdir(parents=True)
    # 100 lives with the same start time; 200 is gone; pid 300 exists but was reused (other start time).
    for pid, comm, start in ((100, "python3", 5000), (300, "a (weird) name", 9999), (400, "sh", 1)):
        (root / "proc" / str(pid)).mkdir(parents=True)
        (root / "proc" / str(pid) / "stat").write_text(STAT.format(pid=pid, comm=comm, start=start))
    (tracefs / "dynamic_events").write_text(
        "p:rawtrace_200/open_entry /usr/lib/libc.so.6:0x1234\n"
        "p:rawtrace_400/open_entry /usr/lib/libc.so.6:0x1234\n"
        "p:other/x /bin/true:0x10\n")
    return root, tracefs


def run_reset(root, tracefs, *extra, capsys):
    code = main(["--root", str(root), "--tracefs", str(tracefs), "reset", *extra])
    return code, capsys.readouterr()


def test_reset_removes_only_dead_owners(tmp_path, capsys):
    root, tracefs = fake_tree(tmp_path)
    code, out = run_reset(root, tracefs, "--json", capsys=capsys)
    result = json.loads(out.out)
    removed = {(i["kind"], i["name"]) for i in result["removed"]}
    kept = {(i["kind"], i["name"]) for i in result["kept"]}
    assert removed == {("instance", "rawtrace-200-6000"), ("instance", "rawtrace-300-7000"),
                       ("probe", "rawtrace_200/open_entry")}
    assert ("instance", "rawtrace-100-5000") in kept and ("probe", "rawtrace_400/open_entry") in kept
    assert ("instance", "rawtrace-notours") in kept
    left = sorted(p.name for p in (tracefs / "instances").iterdir())
    assert left == ["rawtrace-100-5000", "rawtrace-notours", "trace-cmd-x"]
    # The fake dynamic_events is a plain file: the removal command was appended to it.
    assert (tracefs / "dynamic_events").read_text().endswith("-:rawtrace_200/open_entry\n")
    assert code == 0


def test_reset_dry_run_changes_nothing(tmp_path, capsys):
    root, tracefs = fake_tree(tmp_path)
    before = (tracefs / "dynamic_events").read_text()
    code, out = run_reset(root, tracefs, "--dry-run", capsys=capsys)
    assert code == 0
    assert "would remove instance rawtrace-200-6000 (owner pid 200 is gone)" in out.out
    assert "pid 300 now belongs to another process" in out.out
    assert "kept instance rawtrace-100-5000 (owner pid 100 is running)" in out.out
    assert len(list((tracefs / "instances").iterdir())) == 5
    assert (tracefs / "dynamic_events").read_text() == before


def test_reset_with_nothing_to_do(tmp_path, capsys):
    (tmp_path / "t" / "instances").mkdir(parents=True)
    code, out = run_reset(tmp_path, tmp_path / "t", capsys=capsys)
    assert code == 0 and "nothing to reset" in out.out


def test_owner_logic(tmp_path):
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text(STAT.format(pid=7, comm="x) (y", start=1234))
    assert process_starttime(7, tmp_path) == 1234
    assert owner_alive(Owner(7, 1234), tmp_path)
    assert not owner_alive(Owner(7, 1235), tmp_path)
    assert not owner_alive(Owner(8, 1234), tmp_path)
    assert parse_owner("rawtrace-7-1234") == Owner(7, 1234)
    assert parse_owner("rawtrace-7") is None and parse_owner("trace-cmd-7-1") is None
    assert instance_name(7, tmp_path) == "rawtrace-7-1234"


def test_own_instance_name_matches_proc():
    name = instance_name()
    owner = parse_owner(name)
    assert owner is not None and owner_alive(owner)


def test_reset_help_has_examples():
    done = subprocess.run([sys.executable, "-m", "rawtrace", "reset", "--help"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "rawtrace reset --dry-run" in done.stdout


def test_reset_spool_dirs_of_dead_owners_only(tmp_path):
    from rawtrace.cli.reset import remove, spool_leftovers
    mine = tmp_path / f"rawtrace-spool-{os.getpid()}-{process_starttime(os.getpid())}-x1"
    dead = tmp_path / "rawtrace-spool-999999999-5-x2"
    for path in (mine, dead):
        path.mkdir()
        (path / "cpu0").write_bytes(b"page")
    items = {Path(i.name).name: i for i in spool_leftovers(Path("/proc"), str(tmp_path))}
    assert set(items) == {mine.name, dead.name}
    assert items[mine.name].alive and not items[dead.name].alive
    assert "gone" in items[dead.name].reason
    assert remove(tmp_path, items[dead.name]) is None
    assert not dead.exists() and mine.is_dir()


# --- pid namespaces: a rawtrace in a container sharing this tracefs ----------------------------------

OURS, THEIRS = 4026532001, 4026532999


def _proc_with_namespaces(proc: Path, ours: int, processes: dict[int, tuple[int, int]]) -> None:
    """A fake /proc: `self` in pid namespace `ours`; pid -> (start time, pid namespace)."""
    (proc / "self" / "ns").mkdir(parents=True)
    (proc / "self" / "ns" / "pid").symlink_to(f"pid:[{ours}]")
    for pid, (start, namespace) in processes.items():
        (proc / str(pid) / "ns").mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(STAT.format(pid=pid, comm="rawtrace", start=start))
        (proc / str(pid) / "ns" / "pid").symlink_to(f"pid:[{namespace}]")


def test_owner_tag_records_the_pid_namespace(tmp_path):
    from rawtrace.tracefs.instance import (
        owner_tag,
        parse_group_owner,
        parse_spool_owner,
        pid_namespace,
        run_group,
    )
    _proc_with_namespaces(tmp_path, OURS, {7: (1234, OURS)})
    assert pid_namespace("self", tmp_path) == OURS
    assert owner_tag(7, tmp_path) == f"7-1234-ns{OURS}"
    assert parse_owner(instance_name(7, tmp_path)) == Owner(7, 1234, OURS)
    assert parse_owner(f"rawtrace-7-1234-ns{OURS}-2") == Owner(7, 1234, OURS)    # a second session
    assert parse_owner("rawtrace-7-1234-2") == Owner(7, 1234)                   # old format, second session
    assert run_group(7, tmp_path) == f"rawtrace_7_1234_ns{OURS}"
    assert parse_group_owner(run_group(7, tmp_path)) == Owner(7, 1234, OURS)
    assert parse_group_owner("rawtrace_7") == Owner(7, None)                     # old groups: a pid only
    assert parse_spool_owner(f"7-1234-ns{OURS}-abcd1234") == Owner(7, 1234, OURS)
    assert parse_spool_owner("7-1234-ns12ab_x9q") == Owner(7, 1234)              # old name, random "ns12ab.."
    # Real /proc: the tag of this process names its namespace as /proc/self/ns/pid does.
    link = os.readlink("/proc/self/ns/pid")
    assert owner_tag().endswith(f"-ns{link[5:-1]}")


def test_reset_leaves_other_pid_namespaces_alone(tmp_path, capsys):
    """Same numbers, other namespace: pid 100 here is not pid 100 in the container, dead or alive."""
    root, tracefs = tmp_path / "root", tmp_path / "tracefs"
    _proc_with_namespaces(root / "proc", OURS, {100: (5000, OURS)})
    for name in (f"rawtrace-100-5000-ns{OURS}", f"rawtrace-200-6000-ns{OURS}", f"rawtrace-200-6000-ns{THEIRS}",
                 f"rawtrace-100-5000-ns{THEIRS}", "rawtrace-200-6000"):
        (tracefs / "instances" / name).mkdir(parents=True)
    (tracefs / "dynamic_events").write_text(f"p:rawtrace_200_6000_ns{THEIRS}/x /bin/true:0x10\n"
                                            f"p:rawtrace_200_6000_ns{OURS}/x /bin/true:0x10\n")
    code, out = run_reset(root, tracefs, "--json", capsys=capsys)
    result = json.loads(out.out)
    assert code == 0
    removed = {i["name"] for i in result["removed"]}
    kept = {i["name"]: i["reason"] for i in result["kept"]}
    assert removed == {f"rawtrace-200-6000-ns{OURS}", "rawtrace-200-6000", f"rawtrace_200_6000_ns{OURS}/x"}
    assert set(kept) == {f"rawtrace-100-5000-ns{OURS}", f"rawtrace-200-6000-ns{THEIRS}",
                         f"rawtrace-100-5000-ns{THEIRS}", f"rawtrace_200_6000_ns{THEIRS}/x"}
    assert kept[f"rawtrace-200-6000-ns{THEIRS}"] == (
        f"owner pid 200 is in another pid namespace (pid:[{THEIRS}], ours pid:[{OURS}]), where this process "
        "cannot check it")
    assert (tracefs / "instances" / f"rawtrace-100-5000-ns{THEIRS}").is_dir()
    _code, out = run_reset(root, tracefs, capsys=capsys)
    assert f"kept instance rawtrace-200-6000-ns{THEIRS} (owner pid 200 is in another pid namespace" in out.out


def test_reset_from_the_initial_namespace_removes_what_a_vanished_namespace_left(tmp_path, capsys):
    """Seen from the initial pid namespace (every process visible), a namespace with no process left is gone,
    and so are its owners; one that still has a process is kept."""
    from rawtrace.tracefs.instance import INIT_PID_NAMESPACE
    root, tracefs = tmp_path / "root", tmp_path / "tracefs"
    _proc_with_namespaces(root / "proc", INIT_PID_NAMESPACE, {1: (1, INIT_PID_NAMESPACE), 4000: (77, THEIRS)})
    gone_ns = THEIRS + 1
    for name in (f"rawtrace-5-10-ns{THEIRS}", f"rawtrace-5-10-ns{gone_ns}"):
        (tracefs / "instances" / name).mkdir(parents=True)
    code, out = run_reset(root, tracefs, "--json", capsys=capsys)
    result = json.loads(out.out)
    assert code == 0
    assert [(i["name"], i["reason"]) for i in result["removed"]] == [
        (f"rawtrace-5-10-ns{gone_ns}", f"its pid namespace pid:[{gone_ns}] has no process left")]
    assert [i["name"] for i in result["kept"]] == [f"rawtrace-5-10-ns{THEIRS}"]


def test_spool_dirs_of_other_namespaces_are_kept(tmp_path):
    from rawtrace.cli.reset import spool_leftovers
    proc, spools = tmp_path / "proc", tmp_path / "tmp"
    _proc_with_namespaces(proc, OURS, {})
    spools.mkdir()
    (spools / f"rawtrace-spool-300-9-ns{THEIRS}-abcd").mkdir()
    (spools / f"rawtrace-spool-300-9-ns{OURS}-efgh").mkdir()
    items = {Path(i.name).name: i for i in spool_leftovers(proc, str(spools))}
    assert items[f"rawtrace-spool-300-9-ns{THEIRS}-abcd"].alive
    assert "another pid namespace" in items[f"rawtrace-spool-300-9-ns{THEIRS}-abcd"].reason
    assert not items[f"rawtrace-spool-300-9-ns{OURS}-efgh"].alive


def test_reset_without_tracefs_says_it_could_not_look(tmp_path, capsys):
    (tmp_path / "proc").mkdir()
    code, out = run_reset(tmp_path, tmp_path / "nonexistent", capsys=capsys)
    assert code == 0
    assert "nothing to reset" not in out.out
    assert "could not be looked for" in out.out
    assert "tracefs not searched for instances and probes" in out.err and "does not exist" in out.err
    code = main(["--root", str(tmp_path), "reset", "--json"])     # no tracefs in the tree at all
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["tracefs_searched"] is False
    assert "not mounted" in result["not_searched_because"]
