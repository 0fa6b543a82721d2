"""Service names for pods without cluster DNS: what the node agent writes into each pod's /etc/hosts.

Dask Gateway's workers dial ``tls://dask-<id>.<namespace>:8786``; in a cluster, cluster DNS answers.
On the platform the node agent lists each Service's ready endpoints under the names cluster DNS
would answer for, and rewrites the files in place so the bind mounts in running pods follow.
"""

from __future__ import annotations

import os
from pathlib import Path

from localplatform.nodeagent_hosts import hosts_lines, rewrite_in_place, service_hosts
from localplatform.nodeagent_mounts import pod_hosts_text

ENDPOINTS = {
    "items": [
        {
            "metadata": {"namespace": "datalake", "name": "dask-abc"},
            "subsets": [
                {
                    "addresses": [{"ip": "10.244.1.7"}],
                    "notReadyAddresses": [{"ip": "10.244.1.9"}],
                    "ports": [{"port": 8786}],
                }
            ],
        },
        {"metadata": {"namespace": "other", "name": "no-endpoints"}},
    ]
}


def test_ready_endpoints_get_every_name_cluster_dns_answers() -> None:
    """In the pod's own namespace the bare name works too; a not-ready address is never listed."""
    lines = hosts_lines(service_hosts(ENDPOINTS), "datalake")
    assert lines == ["10.244.1.7\tdask-abc dask-abc.datalake dask-abc.datalake.svc dask-abc.datalake.svc.cluster.local"]
    assert "10.244.1.9" not in "\n".join(lines)


def test_from_another_namespace_only_qualified_names() -> None:
    (line,) = hosts_lines(service_hosts(ENDPOINTS), "elsewhere")
    assert line.split("\t")[1].split() == [
        "dask-abc.datalake",
        "dask-abc.datalake.svc",
        "dask-abc.datalake.svc.cluster.local",
    ]


def test_a_pods_hosts_file_keeps_its_own_lines_first() -> None:
    pod = {"metadata": {"name": "dask-worker-abc-x"}, "status": {"podIP": "10.244.2.3"}, "spec": {}}
    text = pod_hosts_text(pod, hosts_lines(service_hosts(ENDPOINTS), "datalake"))
    assert text.splitlines()[1:4] == ["127.0.0.1\tlocalhost", "::1\tlocalhost", "10.244.2.3\tdask-worker-abc-x"]
    assert text.splitlines()[4].startswith("10.244.1.7\tdask-abc ")


def test_rewrites_keep_the_inode_so_bind_mounts_follow(tmp_path: Path) -> None:
    """A bind mount pins the inode: a rename would leave running pods with the old list."""
    hosts = tmp_path / "hosts"
    assert rewrite_in_place(hosts, "a long first version\n")
    inode = os.stat(hosts).st_ino
    assert rewrite_in_place(hosts, "short\n")
    assert not rewrite_in_place(hosts, "short\n")
    assert hosts.read_text() == "short\n" and os.stat(hosts).st_ino == inode
