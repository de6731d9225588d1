"""Shared fixtures: the packaged test model, the stub server, the global registries restored after a test."""

from __future__ import annotations

import pytest

import firsttoken as ft

from .servers import start_stub


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
