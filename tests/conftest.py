"""Shared fixtures: the global registries restored after a test that adds to them."""

from __future__ import annotations

import pytest


@pytest.fixture
def restore_registries():
    """Layouts and backends a test registers are gone after it, whatever the test order."""
    from firsttoken import backends, layouts

    saved = dict(layouts._REGISTRY), dict(backends._REGISTRY), list(backends._DEFAULT)
    yield
    for registry, before in zip((layouts._REGISTRY, backends._REGISTRY), saved):
        registry.clear()
        registry.update(before)
    backends._DEFAULT[:] = saved[2]
