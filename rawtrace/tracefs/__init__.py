"""tracefs I/O: discovery, instances, events, dynamic events, per-CPU readers (no parsing logic here)."""
