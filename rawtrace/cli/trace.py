"""`rawtrace trace`: trace events live (or over -i FILE) through the event pipeline (rawtrace.tracers.trace)."""

from rawtrace.tracers.trace import Trace as TOOL

HELP = TOOL.help
