"""Settings of what a notebook mounts: home, shared areas, EOS, scratch, CVMFS.

Each mount except home has a name; profiles list the names they get, so an admin can give the
GPU profile a big scratch and the tutorial profile no EOS at all.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..modelbase import AbsPath, K8sName, NonEmptyStr, Quantity, Strict

__all__ = [
    "CVMFSMount",
    "EOSMount",
    "HomeStorage",
    "NFSShare",
    "ScratchSpace",
    "SharedVolume",
    "StorageSettings",
]


class NFSShare(Strict):
    """An NFS export."""

    server: NonEmptyStr = Field(description="NFS server host name or IP.")
    path: AbsPath = Field(description="Exported path on the server.")


class HomeStorage(Strict):
    """Where `/home/jovyan` lives.

    `static-nfs`: one NFS share, one subdirectory per user named by the escaped username
    (KubeSpawner's `{escaped_username}`; chosen once and never changed, or homes would be lost).
    `dynamic`: one PVC per user from a storage class. `ephemeral`: an emptyDir (demos only).
    """

    type: Literal["static-nfs", "dynamic", "ephemeral"] = Field("dynamic", description="Kind of home storage.")
    nfs: NFSShare | None = Field(None, description="The share holding every home (static-nfs).")
    claim_name: K8sName = Field("datalake-home", description="PVC of the NFS share the chart creates (static-nfs).")
    storage_class: NonEmptyStr | None = Field(
        None, description="Storage class of per-user PVCs (dynamic); null uses the cluster default."
    )
    capacity: Quantity = Field("10Gi", description="Size of each per-user PVC (dynamic).")
    mount_path: AbsPath = Field("/home/jovyan", description="Mount path inside the notebook.")

    @model_validator(mode="after")
    def _nfs_needs_share(self) -> HomeStorage:
        if self.type == "static-nfs" and self.nfs is None:
            raise ValueError("type static-nfs needs `nfs` (server and path)")
        if self.type != "static-nfs" and self.nfs is not None:
            raise ValueError(f"`nfs` is only used with type static-nfs, not {self.type}")
        return self


class SharedVolume(Strict):
    """A shared project area (ReadWriteMany), from an existing PVC or an NFS share."""

    name: K8sName = Field(description="Mount name profiles refer to.")
    claim_name: K8sName | None = Field(None, description="Existing RWX PVC to mount.")
    nfs: NFSShare | None = Field(None, description="NFS share to mount directly.")
    mount_path: AbsPath = Field(description="Mount path inside the notebook.")
    read_only: bool = Field(False, description="Mount read-only.")
    sub_path: NonEmptyStr | None = Field(None, description="Mount only this subdirectory of the volume.")

    @model_validator(mode="after")
    def _one_source(self) -> SharedVolume:
        if (self.claim_name is None) == (self.nfs is None):
            raise ValueError("set exactly one of `claim_name` and `nfs`")
        return self


class EOSMount(Strict):
    """EOS, mounted on the nodes by the EOS fuse daemon and passed in as a hostPath.

    `HostToContainer` propagation makes mounts the daemon adds later (autofs) visible in the pod.
    """

    name: K8sName = Field(description="Mount name profiles refer to.")
    host_path: AbsPath = Field("/eos", description="Path on the node where EOS is mounted.")
    mount_path: AbsPath = Field("/eos", description="Mount path inside the notebook.")
    read_only: bool = Field(False, description="Mount read-only.")
    eos_path: AbsPath | None = Field(
        None,
        description="The EOS path `host_path` shows (what PFNs of an RSE on this EOS carry after the host); null: "
        "`host_path` itself, as the EOS fuse daemon mounts `/eos/<instance>` at that path. Used to derive the Rucio "
        "panel's replica-mode paths (`rucio.instances[].extension.rse_prefix`).",
    )

    @property
    def shown_eos_path(self) -> str:
        """The EOS path at this mount's root."""
        return self.eos_path if self.eos_path is not None else self.host_path


class ScratchSpace(Strict):
    """Fast local scratch: a sized emptyDir (wiped with the pod) or a node directory."""

    name: K8sName = Field("scratch", description="Mount name profiles refer to.")
    type: Literal["emptyDir", "hostPath"] = Field("emptyDir", description="Kind of scratch volume.")
    size_limit: Quantity | None = Field("10Gi", description="emptyDir size limit.")
    host_path: AbsPath | None = Field(None, description="Node directory (hostPath).")
    medium: Literal["Memory"] | None = Field(None, description="`Memory` for a tmpfs emptyDir.")
    mount_path: AbsPath = Field("/scratch", description="Mount path inside the notebook.")

    @model_validator(mode="after")
    def _hostpath_needs_path(self) -> ScratchSpace:
        if self.type == "hostPath" and self.host_path is None:
            raise ValueError("type hostPath needs `host_path`")
        return self


class CVMFSMount(Strict):
    """CVMFS repositories mounted on the nodes (by the CVMFS CSI driver or autofs)."""

    name: K8sName = Field("cvmfs", description="Mount name profiles refer to.")
    host_path: AbsPath = Field("/cvmfs", description="Path on the node.")
    mount_path: AbsPath = Field("/cvmfs", description="Mount path inside the notebook.")


class StorageSettings(Strict):
    """Every volume a notebook can mount."""

    home: HomeStorage = Field(default_factory=lambda: HomeStorage(), description="Home directories.")
    shared: list[SharedVolume] = Field(default_factory=list, description="Shared project areas.")
    eos: list[EOSMount] = Field(default_factory=list, description="EOS mounts.")
    scratch: list[ScratchSpace] = Field(default_factory=list, description="Scratch spaces.")
    cvmfs: CVMFSMount | None = Field(None, description="CVMFS, if the nodes provide it.")

    @model_validator(mode="after")
    def _names_and_paths_unique(self) -> StorageSettings:
        names = self.mount_names_list()
        reserved = sorted(n for n in names if n == "home" or n.startswith("datalake-"))
        if reserved:
            raise ValueError(f"mount name(s) reserved for the hub's own volumes: {', '.join(reserved)}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"mount name(s) used twice: {', '.join(dupes)}")
        paths = [self.home.mount_path, *(m.mount_path for m in self.named_mounts())]
        dupes = sorted({p for p in paths if paths.count(p) > 1})
        if dupes:
            raise ValueError(f"mount path(s) used twice: {', '.join(dupes)}")
        return self

    def named_mounts(self) -> list[SharedVolume | EOSMount | ScratchSpace | CVMFSMount]:
        """Every mount profiles can ask for by name."""
        out: list[SharedVolume | EOSMount | ScratchSpace | CVMFSMount] = [
            *self.shared,
            *self.eos,
            *self.scratch,
        ]
        if self.cvmfs is not None:
            out.append(self.cvmfs)
        return out

    def mount_names_list(self) -> list[str]:
        """Names of the named mounts, in declaration order."""
        return [m.name for m in self.named_mounts()]

    @property
    def mount_names(self) -> frozenset[str]:
        """Names profiles may list under `mounts`."""
        return frozenset(self.mount_names_list())
