"""A private pod range is used only inside a network namespace of our own, never in the host's."""

from __future__ import annotations

import pytest
from localplatform.base import PlatformError
from localplatform.netns import POD_NETWORK_ENV, in_private_netns, pod_network


def test_without_the_variable_pods_stay_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POD_NETWORK_ENV, raising=False)
    assert pod_network() is None


@pytest.mark.skipif(in_private_netns(), reason="this run is inside a private network namespace already")
def test_asking_for_it_in_the_hosts_namespace_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Private addresses are never bound in the host's own network namespace."""
    monkeypatch.setenv(POD_NETWORK_ENV, "10.244.0.0/16")
    with pytest.raises(PlatformError, match="host's network namespace"):
        pod_network()


@pytest.mark.parametrize("value", ["nonsense", "127.0.0.0/8", "10.244.1.0/24", "fd00::/8"])
def test_a_bad_range_is_named(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(POD_NETWORK_ENV, value)
    with pytest.raises(PlatformError, match=POD_NETWORK_ENV):
        pod_network()
