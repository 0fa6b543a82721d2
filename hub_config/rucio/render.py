"""Pure renderers of what a notebook reads to use Rucio: ``rucio.cfg``, token files, extension config.

No I/O and no clock: given the settings, the user's account and token, each function returns the
exact bytes or dict that goes into the per-server Secret, so every output can be compared with a
stored expected file and checked against the real Rucio client and rucio-jupyterlab schema.

Values come partly from outside (claims, usernames, admin settings), so every value written is
checked again by the rule the settings model applies (:mod:`hub_config.safevalue`: one line of
visible text, no surrounding blanks, bounded), and ``%`` is escaped because the Rucio client reads
the file with interpolation on. Since the model and the renderers share the rule, settings that
``validate`` accepts never make a spawn fail here.
"""

from __future__ import annotations

import configparser
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ExtensionConfigError, UnsafeValue
from ..jwt import parse_compact_jws
from ..safevalue import MAX_VALUE_LENGTH, is_unsafe_char, path_problem, value_problem
from ..settings.rse import ReplicaPaths
from ..settings.rucio import RucioInstance
from .account import account_for

__all__ = [
    "ExtensionMode",
    "InstanceStatus",
    "account_for",
    "cfg_key",
    "one_line",
    "render_extension_config",
    "render_rucio_cfg",
    "render_status_note",
    "render_token_file",
    "render_unavailable_cfg",
    "status_lines",
    "token_key",
    "unavailable_explanation",
]

ExtensionMode = Literal["replica", "download"]


def cfg_key(instance_name: str) -> str:
    """Secret key (file name in the mount) of an instance's own ``rucio.cfg``."""
    return f"rucio-{instance_name}.cfg"


def token_key(instance_name: str) -> str:
    """Secret key (file name in the mount) of an instance's token file."""
    return f"token-{instance_name}"


@dataclass(frozen=True)
class InstanceStatus:
    """What one instance gave a server: an account (ready) or the reason it could not be set up."""

    name: str
    display_name: str
    account: str | None = None
    problem: str | None = None
    """Why the instance is unavailable (one line, no secret); None when it is ready."""

    @property
    def ready(self) -> bool:
        return self.problem is None


_SPACES = re.compile(r"\s+")
EXPLANATION_LIMIT = 600
"""Longest explanation a stand-in ``rucio.cfg`` carries (composed by the hub, so allowed past the settings' limit)."""


def one_line(text: str, limit: int = 240) -> str:
    """``text`` as one short line: reasons come from IdPs and API servers and may hold newlines."""
    flat = "".join(" " if is_unsafe_char(ch) else ch for ch in text)
    flat = _SPACES.sub(" ", flat).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def status_lines(statuses: Sequence[InstanceStatus], *, default: str, mount_path: str) -> list[str]:
    """What the user is told about Rucio: one line per instance, then one line with the overall state.

    The same lines are the spawn's progress messages and the session's ``status.txt``, so what the
    spawn page said can be read again in the session. The default never moves: when it failed the
    overall line says so and names the working instances' files instead.
    """
    mount = mount_path.rstrip("/")
    lines = []
    for st in statuses:
        label = f"Rucio instance {st.display_name}" + (" (default)" if st.name == default else "")
        problem = one_line(st.problem or "")
        lines.append(f"{label}: ready, account {st.account}" if st.ready else f"{label}: unavailable: {problem}")
    ready = [st for st in statuses if st.ready]
    failed = [st for st in statuses if not st.ready]
    chosen = next((st for st in statuses if st.name == default), None)
    if not ready:
        lines.append(
            "Rucio access is unavailable: no Rucio instance could be set up for you; the server starts without Rucio"
        )
    elif not failed:
        name = chosen.display_name if chosen is not None else default
        lines.append(f"Rucio is ready: rucio commands and the Rucio panel use {name} (the default)")
    elif chosen is not None and chosen.ready:
        names = ", ".join(st.display_name for st in failed)
        lines.append(f"Rucio is partly ready: the default, {chosen.display_name}, works; unavailable: {names}")
    else:
        name = chosen.display_name if chosen is not None else default
        working = ", ".join(f"{st.display_name} (rucio --config {mount}/{cfg_key(st.name)})" for st in ready)
        lines.append(
            f"Rucio is partly ready: the default, {name}, is unavailable (rucio.cfg says why); working: {working}"
        )
    return lines


def unavailable_explanation(failed: InstanceStatus, statuses: Sequence[InstanceStatus], *, mount_path: str) -> str:
    """The one line a stand-in ``rucio.cfg`` makes the Rucio client print for an unavailable instance."""
    mount = mount_path.rstrip("/")
    working = [st for st in statuses if st.ready]
    instead = "".join(f" Working instead: rucio --config {mount}/{cfg_key(st.name)} whoami." for st in working)
    return one_line(
        f"unavailable - datalake-hub could not set up Rucio instance {failed.display_name} for you in this "
        f"session: {failed.problem}.{instead} See {mount}/status.txt",
        limit=EXPLANATION_LIMIT,
    )


def render_unavailable_cfg(instance: RucioInstance, *, explanation: str) -> str:
    """A stand-in ``rucio.cfg`` for an instance the hub could not set up: clear failure, never a traceback.

    Without it ``RUCIO_CONFIG`` would name a missing file and every ``rucio`` command would print a
    ``ConfigLoadingError`` traceback. The client refuses an auth type it does not know before it
    contacts anything, and says so with the value: ``auth_type`` holds the explanation (the client
    lowercases it), so ``rucio whoami`` prints "Cannot authenticate." and one ``Details:`` line,
    and ``Client()`` in Python raises ``CannotAuthenticate`` with the same text.
    """
    options = [
        ("rucio_host", instance.rucio_host),
        ("auth_host", instance.auth_host),
        ("ca_cert", instance.ca_cert),
        ("auth_type", one_line(explanation, limit=EXPLANATION_LIMIT)),
        ("vo", instance.vo),
    ]
    header = (
        f"# Rucio instance {instance.name!r} is unavailable in this session, written by datalake-hub.\n"
        "# This stand-in makes rucio commands say why (auth_type); see status.txt next to it.\n"
    )
    return _client_ini(instance.name, options, header)


def render_status_note(lines: Sequence[str]) -> str:
    """``status.txt``: the progress lines about Rucio, readable again in the session."""
    head = "# Rucio in this session, as datalake-hub set it up (rewritten at each token rotation).\n"
    return head + "".join(f"{line}\n" for line in lines)


def _check_value(field: str, value: str, limit: int = MAX_VALUE_LENGTH) -> str:
    """The settings' own rule (:mod:`hub_config.safevalue`), applied again to what is written."""
    problem = value_problem(value, limit=limit)
    if problem is not None:
        raise UnsafeValue(field, problem)
    return value


def _check_path(field: str, value: str) -> str:
    problem = path_problem(value)
    if problem is not None:
        raise UnsafeValue(field, problem)
    return value


def render_rucio_cfg(instance: RucioInstance, *, account: str, token_path: str, issuer: str) -> str:
    """The ``rucio.cfg`` that makes the Rucio client use the hub-provided token file.

    ``auth_type = oidc`` with ``auth_token_file_path``: the client reads the token from that file
    (first line, unstripped) and only falls back to the interactive OIDC login, configured by the
    ``oidc_*`` options, after a 401. ``issuer`` is what the client sends as
    ``X-Rucio-Client-Authorize-Issuer`` for that login: the issuer's id in the Rucio server's
    ``idpsecrets`` (or a substring of its issuer URL). ``token_path`` must be absolute — the
    client does not expand ``~`` or variables.
    """
    problem = path_problem(token_path)
    if problem is not None:
        raise UnsafeValue("auth_token_file_path", problem)
    exchange = instance.token_exchange
    options: list[tuple[str, str | None]] = [
        ("rucio_host", instance.rucio_host),
        ("auth_host", instance.auth_host),
        ("ca_cert", instance.ca_cert),
        ("account", account),
        ("auth_type", "oidc"),
        ("oidc_audience", exchange.audience),
        ("oidc_scope", exchange.scope),
        ("oidc_issuer", issuer),
        ("oidc_polling", "true"),
        ("auth_token_file_path", token_path),
        ("request_retries", str(instance.request_retries)),
        ("vo", instance.vo),
    ]
    header = (
        f"# Rucio client configuration for {instance.name!r}, written by datalake-hub. Do not edit:\n"
        "# the hub rewrites this file and the token next to it while the server runs.\n"
    )
    return _client_ini(instance.name, options, header)


_PATH_OPTIONS = frozenset({"ca_cert", "auth_token_file_path"})


def _client_ini(instance: str, options: Sequence[tuple[str, str | None]], header: str) -> str:
    """A ``[client]`` section of ``options`` (None: left out), every value checked by :func:`_check_value`."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.add_section("client")
    for key, value in options:
        if value is not None:
            field = f"{instance}.{key}"
            if key in _PATH_OPTIONS:
                value = _check_path(field, value)
            else:
                value = _check_value(field, value, EXPLANATION_LIMIT if key == "auth_type" else MAX_VALUE_LENGTH)
            parser.set("client", key, value.replace("%", "%%"))
    out = io.StringIO()
    out.write(header)
    parser.write(out)
    return out.getvalue().rstrip("\n") + "\n"


def render_token_file(token: str) -> bytes:
    """The token file's content: the raw JWT and nothing else — **no trailing newline**.

    The Rucio client and rucio-jupyterlab send the file's first line unstripped, so a newline
    would make every request fail. Surrounding whitespace is stripped; anything that is not a
    compact JWS raises :class:`MalformedToken` (whose message never contains the value).
    """
    token = token.strip()
    parse_compact_jws(token)
    return token.encode("ascii")


def _instance_config(
    inst: RucioInstance,
    mode: ExtensionMode,
    token_path: str,
    problem: str | None = None,
    replica: ReplicaPaths | None = None,
) -> dict[str, Any]:
    ext = inst.extension
    settings_values: dict[str, Any] = {
        "name": inst.name,
        "display_name": inst.display_name,
        "rucio_base_url": inst.rucio_host,
        "rucio_auth_url": inst.auth_host,
        "rucio_webui_url": inst.webui_url,
        "rucio_ca_cert": inst.ca_cert,
        "site_name": inst.site_name,
        "vo": inst.vo,
        "app_id": ext.app_id,
    }
    out: dict[str, Any] = {}
    for key, value in settings_values.items():
        if value is not None:
            check = _check_path if key == "rucio_ca_cert" else _check_value
            out[key] = check(f"{inst.name}.{key}", value)
    if problem is not None:
        out["display_name"] = f"{inst.display_name} (unavailable)"
    if ext.cache_expires_at is not None:
        out["cache_expires_at"] = ext.cache_expires_at
    out["mode"] = mode
    if mode == "replica":
        if replica is None:
            raise ExtensionConfigError(
                f"Rucio instance {inst.name!r}: replica mode needs extension.destination_rse, rse_mount and "
                "rse_prefix inside an EOS mount"
            )
        out["destination_rse"] = _check_value(f"{inst.name}.destination_rse", replica.destination_rse)
        out["rse_mount_path"] = _check_path(f"{inst.name}.rse_mount_path", replica.rse_mount_path)
        out["path_begins_at"] = replica.path_begins_at
        if ext.replication_rule_lifetime_days is not None:
            out["replication_rule_lifetime_days"] = ext.replication_rule_lifetime_days
    out["wildcard_enabled"] = ext.wildcard_enabled
    out["oidc_auth"] = "file"
    out["oidc_file_name"] = _check_path(f"{inst.name}.oidc_file_name", token_path)
    if problem is not None:
        out["datalake_unavailable"] = problem
    return out


def render_extension_config(
    instances: Sequence[RucioInstance],
    *,
    default_instance: str,
    token_path_for: Callable[[str], str],
    modes: Mapping[str, ExtensionMode],
    replica: Mapping[str, ReplicaPaths] | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``jupyter_server_config.json`` content configuring rucio-jupyterlab 41 for these instances.

    ``oidc_auth: file`` points the extension at the same token file the client uses: it re-reads
    the file when the cached token expires, so rotation in place reaches it (``env`` never would).
    ``modes`` comes from :func:`.selection.extension_modes` and ``replica`` (the replica-mode
    paths, by instance) from :func:`hub_config.settings.rse.replica_paths_by_instance`;
    ``token_path_for(name)`` gives the absolute token path in the notebook. The result validates
    against the extension's own JSON schema.
    ``unavailable`` (name → reason): instances the hub could not set up for this user. They stay
    listed, shown as "<name> (unavailable)" with the reason under ``datalake_unavailable`` (the
    schema allows extra keys), and the default stays the default, so the panel never silently
    switches instance.
    """
    names = [i.name for i in instances]
    if not instances:
        raise ExtensionConfigError("no Rucio instance to configure")
    if default_instance not in names:
        raise ExtensionConfigError(f"default instance {default_instance!r} is not one of {names}")
    missing = [n for n in names if n not in modes]
    if missing:
        raise ExtensionConfigError(f"no extension mode given for instance(s) {missing}")
    return {
        "RucioConfig": {
            "instances": [
                _instance_config(
                    i,
                    modes[i.name],
                    token_path_for(i.name),
                    (unavailable or {}).get(i.name),
                    (replica or {}).get(i.name),
                )
                for i in instances
            ],
            "default_instance": default_instance,
            "default_auth_type": "oidc",
        }
    }
