"""`python -m rawtrace` entry point."""

import sys

from rawtrace.cli import main

sys.exit(main())
