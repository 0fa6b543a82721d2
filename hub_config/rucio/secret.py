"""Builders of the per-server Rucio Secret and of how the notebook pod mounts it. Pure: no I/O.

One Secret per server (not per user) so two named servers of one user with different profiles
get their own instance selection and extension modes, and stopping one never removes the other's
credentials. The Secret is mounted as a whole directory: the kubelet only refreshes directory
mounts, so a ``subPath`` mount would freeze the first token forever.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import RenderError
from ..settings.rse import ReplicaPaths
from ..settings.rucio import RucioInstance, RucioSettings
from .render import (
    ExtensionMode,
    InstanceStatus,
    cfg_key,
    render_extension_config,
    render_rucio_cfg,
    render_status_note,
    render_token_file,
    render_unavailable_cfg,
    status_lines,
    token_key,
    unavailable_explanation,
)

__all__ = [
    "CONFIG_KEY",
    "EXTENSION_KEY",
    "MANAGED_LABELS",
    "SECRET_MODE",
    "STATUS_KEY",
    "VOLUME_NAME",
    "OwnerPod",
    "build_rucio_secret",
    "build_secret_volume",
    "default_instance",
    "env_for",
    "instance_statuses",
    "owner_reference",
    "secret_name_for",
    "token_path",
]

CONFIG_KEY = "rucio.cfg"
"""The default instance's configuration; ``RUCIO_CONFIG`` points here."""
EXTENSION_KEY = "jupyter_server_config.json"
"""rucio-jupyterlab's configuration; the image's start-up hook puts the mount on ``JUPYTER_CONFIG_PATH``."""
STATUS_KEY = "status.txt"
"""One line per instance and the overall state (the spawn's progress lines), for the user to read."""
VOLUME_NAME = "datalake-rucio"
"""Pod volume name (``datalake-`` names are reserved for the hub's own volumes in storage settings)."""
SECRET_MODE = 0o440
"""File mode in the mount: owner root, group the pod's ``fsGroup`` (z2jh: 100, the notebook user's
group), so the notebook user reads the files through its group and nobody else can."""
MANAGED_LABELS = {
    "app.kubernetes.io/managed-by": "datalake-hub",
    "app.kubernetes.io/component": "rucio-credentials",
}
"""Labels every Rucio Secret carries, so the rotator and admins can find them."""

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


@dataclass(frozen=True)
class OwnerPod:
    """The notebook pod owning the Secret, so Kubernetes deletes the Secret with the pod."""

    name: str
    uid: str


def owner_reference(owner: OwnerPod) -> dict[str, Any]:
    """The ``ownerReferences`` entry that makes the pod own a Secret (the one place it is built).

    ``blockOwnerDeletion: false``: the pod's deletion never waits for the Secret's.
    """
    return {"apiVersion": "v1", "kind": "Pod", "name": owner.name, "uid": owner.uid, "blockOwnerDeletion": False}


def secret_name_for(pod_name: str) -> str:
    """``<pod_name>-rucio``, checked to be a valid Secret name (DNS subdomain, ≤ 253 characters)."""
    name = f"{pod_name}-rucio"
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise RenderError(f"{name[:80]!r} is not a valid Secret name (DNS subdomain of at most 253 characters)")
    return name


def token_path(rucio: RucioSettings, instance_name: str) -> str:
    """Absolute path of an instance's token file inside the notebook."""
    return f"{rucio.mount_path.rstrip('/')}/{token_key(instance_name)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _labels(extra: Mapping[str, str] | None) -> dict[str, str]:
    labels = {**(extra or {}), **MANAGED_LABELS}
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            raise RenderError(f"invalid label {key[:80]!r}: {value[:80]!r}")
    return labels


def default_instance(rucio: RucioSettings, instances: Sequence[RucioInstance]) -> str | None:
    """The instance ``rucio.cfg`` and the extension default to for a server of these instances.

    The settings' default (``default_instance``, else the first instance) when the profile has it,
    else the profile's first instance. Decided by settings and profile only — never by which
    instances worked for the user, so the default cannot move silently when one fails.
    """
    names = [i.name for i in instances]
    if not names:
        return None
    return rucio.default.name if rucio.default is not None and rucio.default.name in names else names[0]


def instance_statuses(
    instances: Sequence[RucioInstance], *, accounts: Mapping[str, str], unavailable: Mapping[str, str]
) -> list[InstanceStatus]:
    """Each instance's outcome, in settings order: ready with its account, or why not."""
    return [
        InstanceStatus(i.name, i.display_name, problem=unavailable[i.name])
        if i.name in unavailable
        else InstanceStatus(i.name, i.display_name, account=accounts.get(i.name))
        for i in instances
    ]


def build_rucio_secret(
    rucio: RucioSettings,
    instances: Sequence[RucioInstance],
    *,
    name: str,
    namespace: str,
    tokens: Mapping[str, str],
    accounts: Mapping[str, str],
    issuer: str,
    modes: Mapping[str, ExtensionMode],
    replica: Mapping[str, ReplicaPaths] | None = None,
    unavailable: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    owner: OwnerPod | None = None,
) -> dict[str, Any]:
    """The Secret (a V1Secret-shaped dict) holding a server's Rucio files.

    ``instances``: every instance the server's profile gets; ``unavailable`` (name → reason) those
    the hub could not set up for this user. Keys: ``rucio-<name>.cfg`` per instance,
    ``token-<name>`` per working instance, ``rucio.cfg`` (always the :func:`default_instance`'s
    file), ``status.txt`` and ``jupyter_server_config.json``. An unavailable instance's config is a
    stand-in that makes ``rucio`` print why in one line, so ``RUCIO_CONFIG`` never names a missing
    file and the default never silently becomes another instance. ``tokens``/``accounts`` must
    cover every working instance; ``replica`` the replica-mode paths of the instances ``modes``
    puts in replica mode. ``owner``: the pod, once it exists, so the Secret is
    garbage-collected with it.
    """
    default = default_instance(rucio, instances)
    if default is None:
        raise RenderError("no Rucio instance to put in the Secret")
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise RenderError(f"{name[:80]!r} is not a valid Secret name")
    unavailable = dict(unavailable or {})
    missing = [
        i.name for i in instances if i.name not in unavailable and (i.name not in tokens or i.name not in accounts)
    ]
    if missing:
        raise RenderError(f"no token or account for instance(s) {missing}")
    statuses = instance_statuses(instances, accounts=accounts, unavailable=unavailable)

    files: dict[str, bytes] = {}
    for inst, status in zip(instances, statuses, strict=True):
        if status.ready:
            cfg = render_rucio_cfg(
                inst, account=accounts[inst.name], token_path=token_path(rucio, inst.name), issuer=issuer
            ).encode()
            files[token_key(inst.name)] = render_token_file(tokens[inst.name])
        else:
            why = unavailable_explanation(status, statuses, mount_path=rucio.mount_path)
            cfg = render_unavailable_cfg(inst, explanation=why).encode()
        files[cfg_key(inst.name)] = cfg
        if inst.name == default:
            files[CONFIG_KEY] = cfg
    lines = status_lines(statuses, default=default, mount_path=rucio.mount_path)
    files[STATUS_KEY] = render_status_note(lines).encode()
    extension = render_extension_config(
        instances,
        default_instance=default,
        token_path_for=lambda n: token_path(rucio, n),
        modes=modes,
        replica=replica,
        unavailable=unavailable,
    )
    files[EXTENSION_KEY] = (json.dumps(extension, indent=2, sort_keys=True) + "\n").encode()

    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": _labels(labels)}
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {key: _b64(value) for key, value in sorted(files.items())},
    }


def build_secret_volume(rucio: RucioSettings, secret_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod volume and container mount of the Rucio Secret.

    A directory mount, never ``subPath``: the kubelet swaps the directory's files atomically on
    update, which is how rotated tokens reach a running server. ``defaultMode`` 0440 plus the
    pod's ``fsGroup`` lets the notebook user (not others) read the files; read-only because the
    hub, not the notebook, owns them (a 401 makes the client try to rewrite the token file — it
    fails harmlessly instead of replacing the hub's token with a browser-login one).
    """
    volume = {"name": VOLUME_NAME, "secret": {"secretName": secret_name, "defaultMode": SECRET_MODE}}
    mount = {"name": VOLUME_NAME, "mountPath": rucio.mount_path, "readOnly": True}
    return volume, mount


def env_for(rucio: RucioSettings, default: str | None = None) -> dict[str, str]:
    """Environment of a notebook with Rucio: where the files are and which instance is the default.

    ``RUCIO_CONFIG`` always names a file the Secret holds (a stand-in when the default instance
    failed for the user); when the Secret itself is missing the image's start-up hook points it at
    a stand-in in ``$TMPDIR``. ``DATALAKE_RUCIO_DEFAULT``: the :func:`default_instance` (when
    known), so the session can say which instance ``rucio.cfg`` is. No ``BEARER_TOKEN*``: the
    Rucio client prefers those over ``auth_token_file_path``, and env vars cannot be rotated in a
    running process.
    """
    mount = rucio.mount_path.rstrip("/")
    env = {"RUCIO_CONFIG": f"{mount}/{CONFIG_KEY}", "DATALAKE_RUCIO_DIR": mount}
    if default is not None:
        env["DATALAKE_RUCIO_DEFAULT"] = default
    return env
