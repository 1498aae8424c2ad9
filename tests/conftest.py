"""Every test that takes `device` runs once per backend; backends missing on this machine are skipped, by name."""
import pytest

import fusegrad as fg

KNOWN_DEVICES = ["numpy", "cpu", "cuda", "opencl"]


@pytest.fixture(params=KNOWN_DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """A backend name; skips (saying which) when that backend is not available here."""
    if request.param not in fg.available_devices():
        pytest.skip(f"device {request.param!r} is not available on this machine")
    return request.param


def pytest_report_header(config: pytest.Config) -> str:
    missing = [d for d in KNOWN_DEVICES if d not in fg.available_devices()]
    return f"fusegrad devices: tested {fg.available_devices()}, skipped (not available) {missing}"
