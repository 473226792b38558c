"""`rawtrace trace`: trace events live (or over -i FILE) through the event pipeline (rawtrace.tracers.trace)."""

from rawtrace.tracers.trace import Trace as TOOL  # noqa: N811 - the CLI looks for TOOL

HELP = TOOL.help
