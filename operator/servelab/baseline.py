"""`servelab baseline save NAME --as SAVED`: see servelab.gate."""

from servelab.gate import add_baseline_arguments as add_arguments
from servelab.gate import run_baseline as run

__all__ = ["add_arguments", "run"]
