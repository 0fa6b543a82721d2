"""The node agent's pod records: what it writes is what tests read through ``agent_pods``."""

from __future__ import annotations

from pathlib import Path

from localplatform.nodeagent import agent_pods
from localplatform.nodeagent_procs import write_meta


def test_agent_pods_reads_what_the_agent_writes(tmp_path: Path) -> None:
    """A pod directory with ``meta.json`` and ``pid`` is one record, with the leader's PID."""
    pod_dir = tmp_path / "ns_jupyter-alice_abcdef12"
    pod_dir.mkdir()
    write_meta(pod_dir, "ns", "jupyter-alice", "abcdef12-uid", "10.0.0.5")
    (pod_dir / "pid").write_text("4242 12345 mnt:[4026532000]")
    (pods,) = agent_pods({"nodeagent": {"pods_dir": str(tmp_path)}})
    assert (pods.namespace, pods.name, pods.uid, pods.ip, pods.pid) == (
        "ns",
        "jupyter-alice",
        "abcdef12-uid",
        "10.0.0.5",
        4242,
    )


def test_a_pod_not_yet_launched_is_listed_without_pid(tmp_path: Path) -> None:
    """Between ``meta.json`` and the launch the pod counts as run (its IP is taken), with no PID."""
    pod_dir = tmp_path / "ns_p_1"
    pod_dir.mkdir()
    write_meta(pod_dir, "ns", "p", "1", "10.0.0.6")
    (half_written := tmp_path / "ns_q_2").mkdir()
    (half_written / "meta.json").write_text("{")
    assert [(p.name, p.pid) for p in agent_pods({"nodeagent": {"pods_dir": str(tmp_path)}})] == [("p", None)]


def test_no_agent_no_pods() -> None:
    """Without a node agent section (platform not up) nothing runs."""
    assert agent_pods({}) == []
