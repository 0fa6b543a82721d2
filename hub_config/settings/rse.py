"""Where an instance's RSE is mounted in the notebook: the extension's replica-mode paths, derived.

rucio-jupyterlab's replica mode turns a replica's PFN into a file path: it drops the first
``path_begins_at`` components of the PFN's path and joins the rest to ``rse_mount_path``. Set by
hand those two numbers drift from the storage they describe (the issue that brought this module: a
``path_begins_at`` computed from where a state directory happened to be, and paths that did not
exist). So an admin describes facts instead — which RSE is behind which EOS mount
(``extension.destination_rse``, ``extension.rse_mount``), the path its PFNs carry
(``extension.rse_prefix``) and which EOS path that mount shows (``storage.eos[].eos_path``) — and
:func:`replica_paths` derives the rest. The settings model refuses a combination that cannot work
through :func:`rse_problems`, each problem naming its settings key; the renderer and ``preview``
call :func:`replica_paths`, so what ``validate`` checked is what the notebook gets. Pure.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ..modelbase import KeyedValueError
from ..safevalue import path_problem
from .rucio import RucioInstance, RucioSettings
from .storage import EOSMount, StorageSettings

__all__ = ["ReplicaPaths", "path_parts", "replica_paths", "replica_paths_by_instance", "rse_problems"]


@dataclass(frozen=True)
class ReplicaPaths:
    """What rucio-jupyterlab needs for replica mode on one instance (its config keys, derived)."""

    destination_rse: str
    rse_mount: str
    """The storage mount (an EOS mount's name) profiles must list to get replica mode."""
    rse_prefix: str
    rse_mount_path: str
    """Where the RSE's prefix directory is inside the notebook."""
    path_begins_at: int
    """How many leading PFN path components the extension drops (the prefix's)."""


def path_parts(path: str) -> list[str]:
    """The components of an absolute path (``/eos/lake/`` → ``["eos", "lake"]``)."""
    return [p for p in path.split("/") if p]


def _eos_mount(storage: StorageSettings, name: str) -> EOSMount | None:
    return next((m for m in storage.eos if m.name == name), None)


def _relative(path: str, base: str) -> list[str] | None:
    """``path``'s components below ``base``, or None when ``path`` is not ``base`` or under it."""
    parts, base_parts = path_parts(path), path_parts(base)
    if parts[: len(base_parts)] != base_parts:
        return None
    return parts[len(base_parts) :]


def replica_paths(instance: RucioInstance, storage: StorageSettings) -> ReplicaPaths | None:
    """The replica-mode paths of ``instance``, or None when it names no RSE mount (or a wrong one,
    which :func:`rse_problems` refuses, so settings that validated never get None here by mistake)."""
    ext = instance.extension
    if ext.destination_rse is None or ext.rse_mount is None or ext.rse_prefix is None:
        return None
    mount = _eos_mount(storage, ext.rse_mount)
    if mount is None:
        return None
    below = _relative(ext.rse_prefix, mount.shown_eos_path)
    if below is None:
        return None
    return ReplicaPaths(
        destination_rse=ext.destination_rse,
        rse_mount=mount.name,
        rse_prefix=ext.rse_prefix,
        rse_mount_path=posixpath.join(mount.mount_path, *below),
        path_begins_at=len(path_parts(ext.rse_prefix)),
    )


def replica_paths_by_instance(rucio: RucioSettings, storage: StorageSettings) -> dict[str, ReplicaPaths]:
    """:func:`replica_paths` of every instance that has them, by instance name."""
    out: dict[str, ReplicaPaths] = {}
    for inst in rucio.instances:
        paths = replica_paths(inst, storage)
        if paths is not None:
            out[inst.name] = paths
    return out


def rse_problems(rucio: RucioSettings, storage: StorageSettings) -> list[KeyedValueError]:
    """Why an instance's RSE mount cannot work, each with the settings key it is about.

    An RSE named without a mount (or the reverse) is the extension model's own rule; here are the
    ones that need the storage settings: the mount must be an EOS mount, and the RSE's prefix must
    be inside what that mount shows, or replica mode would point at paths that do not exist.
    """
    problems: list[KeyedValueError] = []
    eos_names = [m.name for m in storage.eos]
    for index, inst in enumerate(rucio.instances):
        ext = inst.extension
        at = ("rucio", "instances", index, "extension")
        if ext.rse_mount is None or ext.rse_prefix is None:
            continue
        mount = _eos_mount(storage, ext.rse_mount)
        if mount is None:
            problems.append(
                KeyedValueError(
                    (*at, "rse_mount"),
                    f"{ext.rse_mount!r} is not an EOS mount in storage.eos (known: {', '.join(eos_names) or 'none'}); "
                    "replica mode reads the RSE's files where an EOS mount shows them",
                )
            )
            continue
        paths = replica_paths(inst, storage)
        if paths is None:
            problems.append(
                KeyedValueError(
                    (*at, "rse_prefix"),
                    f"RSE {ext.destination_rse} prefix {ext.rse_prefix} is not inside what EOS mount "
                    f"{mount.name!r} shows (EOS path {mount.shown_eos_path}, at {mount.mount_path} in the notebook): "
                    "its files would not be in the mounted volume",
                )
            )
            continue
        problem = path_problem(paths.rse_mount_path)
        if problem is not None:
            problems.append(
                KeyedValueError(
                    (*at, "rse_prefix"),
                    f"the notebook path it gives ({mount.mount_path} + the prefix below "
                    f"{mount.shown_eos_path}) {problem}",
                )
            )
    return problems
