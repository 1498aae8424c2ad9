"""Every test that takes `device` runs once per backend; backends missing on this machine are skipped, by name."""
import os
import zlib

import pytest
from cuda_emulator import EmulatedCudaDevice, emulator_available

import fusegrad as fg
from fusegrad.runtime import register_device

# Without a GPU, `cuda` is fusegrad's CudaDevice over a CPU emulation of the CUDA driver (tests/cuda_emulator.py): its
# printed kernels run for real, compiled by g++. FUSEGRAD_CUDA_EMULATOR=0 leaves `cuda` out instead.
CUDA_EMULATED = ("cuda" not in fg.available_devices() and emulator_available()
                 and os.environ.get("FUSEGRAD_CUDA_EMULATOR", "1") != "0")
if CUDA_EMULATED:
    register_device("cuda", EmulatedCudaDevice)

KNOWN_DEVICES = ["numpy", "cpu", "cuda", "opencl"]
# PoCL (OpenCL on the CPU, what CI has) compiles every new kernel for ~0.1 s: the whole suite on it takes 12+ minutes
# on 2 cores. There each test function runs its first parametrization and 1 in SAMPLE_EVERY of the others (fixed by
# name); FUSEGRAD_TEST_ALL_DEVICES=1 runs them all. The emulated `cuda` (g++ per new program, a minute and a half of
# compiling per 1000 tests on a fresh machine) runs 1 in 24: its kernels differ from the others' only in print.
SAMPLE_EVERY = {"opencl": 6, "cuda": 24} if CUDA_EMULATED else {"opencl": 6}


def _sampled_out(request: pytest.FixtureRequest) -> bool:
    if request.param not in SAMPLE_EVERY or os.environ.get("FUSEGRAD_TEST_ALL_DEVICES"):
        return False
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or all(i == 0 for k, i in callspec.indices.items() if k != "device"):
        return False
    return zlib.crc32(request.node.nodeid.replace(request.param, "").encode()) % SAMPLE_EVERY[request.param] != 0


@pytest.fixture(params=KNOWN_DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """A backend name; skips (saying which) when that backend is not available here."""
    if request.param not in fg.available_devices():
        pytest.skip(f"device {request.param!r} is not available on this machine")
    if _sampled_out(request):
        pytest.skip(f"device {request.param!r} runs a sample of the parametrizations (FUSEGRAD_TEST_ALL_DEVICES=1 "
                    "runs all)")
    return request.param


def pytest_report_header(config: pytest.Config) -> str:
    missing = [d for d in KNOWN_DEVICES if d not in fg.available_devices()]
    emulated = " (cuda: EMULATED on the CPU by tests/cuda_emulator.py, no GPU here)" if CUDA_EMULATED else ""
    return f"fusegrad devices: tested {fg.available_devices()}{emulated}, skipped (not available) {missing}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Skips grouped by reason, so the devices that were not tested are said once each, with a count."""
    counts: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        counts[reason] = counts.get(reason, 0) + 1
    if counts:
        terminalreporter.section("skipped, by reason")
        for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{n:6d}  {reason}")
