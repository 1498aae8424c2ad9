"""DEBUG=2: where a compiled step's time went, per call it makes, printed for every profiled step at exit."""
from __future__ import annotations

import atexit
import sys

import numpy as np


class StepProfile:
    """Seconds spent in each call of a compiled step (kernels, products, copies), summed over its runs."""

    def __init__(self, names: list[str], seconds: np.ndarray):
        self.names, self.seconds, self.runs = names, seconds, 0
        PROFILED.append(self)

    def table(self) -> list[tuple[str, float]]:
        """(what, ms per run) for each call, slowest first."""
        if not self.runs:
            return []
        times = self.seconds[:len(self.names)] * 1e3 / self.runs
        return sorted(zip(self.names, times.tolist()), key=lambda pair: -pair[1])


PROFILED: list[StepProfile] = []


@atexit.register
def _print_profiles() -> None:
    for profile in PROFILED:
        table = profile.table()
        total = sum(ms for _, ms in table) or 1.0
        print(f"jit step profile: {len(table)} calls, {total:.3f} ms per run over {profile.runs} runs", file=sys.stderr)
        for what, ms in table[:40]:
            print(f"  {ms:9.4f} ms {100 * ms / total:5.1f}%  {what}", file=sys.stderr)
