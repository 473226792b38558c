"""Syscall tables generated from kernel sources (data only; see tools/gen_tables.py)."""
