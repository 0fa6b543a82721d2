"""Session fixtures for tests that run against the real local platform (integration and e2e).

The platform is started once per test session (cached binaries make this take seconds
after the first build) and stopped at the end unless ``DATALAKE_KEEP_PLATFORM=1``.
Components' ``up`` is idempotent, so asking for a component already running is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from localplatform import platform_down, platform_up

PlatformFactory = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def platform_factory() -> Iterator[PlatformFactory]:
    """``platform_factory("kwok")`` starts the platform up to and including ``kwok``."""
    started = False

    def get(*names: str) -> dict[str, Any]:
        nonlocal started
        started = True
        return platform_up(only=names or None)

    yield get
    if started and os.environ.get("DATALAKE_KEEP_PLATFORM") != "1":
        platform_down()


@pytest.fixture(scope="session")
def platform_info(platform_factory: PlatformFactory) -> dict[str, Any]:
    """The whole platform, up."""
    return platform_factory()
