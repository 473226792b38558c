"""`rawtrace decode`: a trace.dat or saved raw sub-buffers, offline, through the event pipeline."""

from rawtrace.tracers.trace import Decode as TOOL

HELP = TOOL.help
from rawtrace.sources import file_cpu  # noqa: F401 - where callers found it before
