"""Shared fixtures: the packaged test model, the stub server, the global registries restored after a test.

And the tiers (issue 47): each test is in the fast tier or in one real-engine tier, by its marker (pyproject.toml).
`make test` runs the fast tier on every core (pytest-xdist), then the real tiers in one process, in TIERS' order,
so that no llama.cpp decode runs while anything else does: the vLLM servers are launched together as soon as their
tier is collected and stopped as soon as it ends, before llama.cpp's tiers. The session ends with each tier's
wall time (bench/tiers.py runs both sessions, and with --alone each real tier alone)."""

from __future__ import annotations

import pytest

import firsttoken as ft

from .servers import VLLM_SERVERS, launch_vllm, start_stub, stop_vllm_servers

TIERS = ("vllm", "model", "llama_server")  # the real-engine tiers, in the order they run
_SPANS: dict[str, list[float]] = {}  # a tier's first start and last stop (epoch seconds)
_COUNTS: dict[str, int] = {}


def tier(item: pytest.Item) -> str:
    """The tier a test is in: its real-engine marker, or "fast"."""
    marks = [t for t in TIERS if item.get_closest_marker(t) is not None]
    assert len(marks) <= 1, f"{item.nodeid} is marked for several tiers: {marks}"
    return marks[0] if marks else "fast"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    order = ("fast", *TIERS)
    items.sort(key=lambda item: order.index(tier(item)))  # stable: each tier keeps the files' order


def pytest_collection_finish(session: pytest.Session) -> None:
    """Launch the vLLM servers now (a boot is most of a minute) where this process runs their tier's tests."""
    if session.config.option.collectonly or hasattr(session.config, "workerinput"):
        return  # under xdist a worker's fixture launches its own server when first asked
    if any(tier(item) == "vllm" for item in session.items):
        for name in VLLM_SERVERS:
            try:
                launch_vllm(name)
            except RuntimeError:
                break  # no vLLM build: each vllm test fails, saying why, when its fixture asks for a server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    result = yield
    if tier(item) == "vllm" and (nextitem is None or tier(nextitem) != "vllm"):
        stop_vllm_servers()  # their tier is over: idle servers would still slow llama.cpp's tiers
    return result


def pytest_sessionfinish() -> None:
    stop_vllm_servers()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item):
    report = yield
    report.user_properties.append(("tier", tier(item)))  # travels from an xdist worker with the report
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    name = dict(report.user_properties).get("tier", "fast")
    span = _SPANS.setdefault(name, [report.start, report.stop])
    span[0], span[1] = min(span[0], report.start), max(span[1], report.stop)
    _COUNTS[name] = _COUNTS.get(name, 0) + (report.when == "call")


def pytest_terminal_summary(terminalreporter) -> None:
    if _SPANS:
        terminalreporter.write_sep("=", "wall time per tier")
        for name in ("fast", *TIERS):
            if name in _SPANS:
                start, stop = _SPANS[name]
                terminalreporter.write_line(f"{name:<13} {_COUNTS[name]:>4} tests {stop - start:>7.1f} s")


@pytest.fixture(scope="module")
def smol():
    """The packaged test model, loaded once per module (so a module's calls follow only its own)."""
    return ft.load("smollm2-135m")


@pytest.fixture(scope="module")
def stub():
    """An OpenAI-compatible stub server on loopback that answers every request with {"answer": 4}: its URL."""
    proc, url = start_stub('{"answer": 4}')
    yield url
    proc.kill()
    proc.wait()


@pytest.fixture
def restore_registries():
    """Layouts, backends and engines a test registers are gone after it, whatever the test order."""
    from firsttoken import backends, layouts
    from firsttoken.backends import engines

    saved = dict(layouts._REGISTRY), dict(backends._REGISTRY), dict(layouts._REFS), list(backends._DEFAULT), \
        dict(engines._ENGINES)
    yield
    for registry, before in zip((layouts._REGISTRY, backends._REGISTRY, layouts._REFS, engines._ENGINES),
                                (*saved[:3], saved[4])):
        registry.clear()
        registry.update(before)
    backends._DEFAULT[:] = saved[3]
