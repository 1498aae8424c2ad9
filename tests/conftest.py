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
