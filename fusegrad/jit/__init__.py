"""The jit: capture a whole step once, replay it as one compiled program (see `jit.py`)."""
from .jit import jit
from .memory_plan import MemoryPlan
from .trace import JitError

__all__ = ["JitError", "MemoryPlan", "jit"]
