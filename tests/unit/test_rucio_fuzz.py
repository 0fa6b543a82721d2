"""Fuzzing the settings → Rucio files path: what the settings model accepts, every renderer writes faithfully.

Hypothesis builds `datalake:` blocks whose every value that reaches ``rucio.cfg`` or the
rucio-jupyterlab config is hostile text (line breaks, control and invisible characters, lone
surrogates, ``%``, ``[``, ``~``, ``$``, stray blanks, over-long values). For each one either the
model refuses it (a pydantic ``ValidationError``: `validate` reports it with the key path), or
the whole per-server Secret renders — ready and unavailable instances alike — and each file reads
back, through the parser the Rucio client uses (``ConfigParser()``: strict, ``%`` interpolation,
read from a file) and through JSON plus the extension's own schema, to exactly the values the
model holds. A value the model accepts and a renderer then refuses fails here: that disagreement
made every spawn of such a site fail.
"""

from __future__ import annotations

import base64
import configparser
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hub_config.profiles.model import Profile
from hub_config.rucio import build_rucio_secret, cfg_key, extension_modes, token_path
from hub_config.safevalue import MAX_PATH_LENGTH, MAX_VALUE_LENGTH
from hub_config.settings import Settings
from hub_config.settings.rse import replica_paths, replica_paths_by_instance
from hub_config.settings.rucio import MAX_INSTANCES
from tests.support.expected import fake_jwt
from tests.support.extension_schema import validate_extension

NASTY = [
    *"%[]=:;#~${}\"'\\/ é",
    *"\n\r\t\x00\x0b\x0c\x1b\x1c\x7f\x85\xa0",
    *"\u2028\u2029\u200b\u200e\u202e\u2066\ufeff\u3000\ud800\udfff",
    "%(home)s",
    "\r\n[client]\nauth_type = userpass",
]
_pieces = st.one_of(st.sampled_from(NASTY), st.characters(codec=None), st.sampled_from(["a", "rucio", "0", "-"]))
_hostile = st.one_of(st.lists(_pieces, max_size=12).map("".join), st.just("x" * (MAX_VALUE_LENGTH + 1)))
_visible = st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp"))
_plain = st.one_of(
    st.text(st.one_of(_visible, st.sampled_from('%[]=:;#{}"\\ é')), min_size=1, max_size=16)
    .map(str.strip)
    .filter(bool),
    st.just("x" * MAX_VALUE_LENGTH),
)


def _mostly(plain: st.SearchStrategy[str], hostile: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """One draw in twelve hostile: with some twenty values per site, a fifth of the sites are all plain."""
    return st.sampled_from([plain] * 11 + [hostile]).flatmap(lambda chosen: chosen)


_text = _mostly(_plain, _hostile)
"""Mostly values a site could mean (with `%`, brackets, inner blanks, any script), sometimes hostile."""
_url = st.builds(
    lambda host, rest: f"https://{host}/{rest}"[:MAX_VALUE_LENGTH],
    st.sampled_from(["r.example.org", "h:8443"]),
    _mostly(_plain.filter(lambda t: not any(c.isspace() for c in t)), _hostile),
)
_path = _text.map(lambda rest: ("/" + rest)[:MAX_VALUE_LENGTH])
_mount_path = _text.map(lambda rest: ("/" + rest)[:MAX_PATH_LENGTH])


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


_DEFAULT = object()


@st.composite
def _site(draw: st.DrawFn) -> dict[str, Any]:
    """A `datalake:` block: the IdP issuer, the mount path and two instances; any value reaching a file may be hostile."""
    instances = []
    for name in ("lake", "cta"):
        replica = name == "lake" and draw(st.booleans())
        ext: dict[str, Any] = {}
        if replica:
            ext |= {"destination_rse": draw(_text), "rse_mount": "eos", "rse_prefix": draw(_path)}
        for key, value in (("app_id", draw(_maybe(_text))), ("cache_expires_at", None)):
            if value is not None:
                ext[key] = value
        inst: dict[str, Any] = {
            "name": name,
            "display_name": draw(_text),
            "rucio_host": draw(_url),
            "auth_host": draw(_url),
            "account_template": "{username}",
            "token_exchange": {"audience": draw(_text), "scope": ("openid profile " + draw(_text))[:MAX_VALUE_LENGTH]},
            "extension": ext,
        }
        for key, value in (
            ("webui_url", draw(_maybe(_url))),
            ("vo", draw(_maybe(_text))),
            ("site_name", draw(_maybe(_text))),
        ):
            if value is not None:
                inst[key] = value
        # ca_cert has a default: leave it out, set it, or (rarely) null it, which the model refuses
        ca = draw(_mostly(st.one_of(st.just(_DEFAULT), _path), st.none()))
        if ca is not _DEFAULT:
            inst["ca_cert"] = ca
        instances.append(inst)
    return {
        "iam": {"issuer": draw(_url), "client_id": "hub", "allowed_groups": ["escape"]},
        "storage": {"eos": [{"name": "eos", "eos_path": "/", "mount_path": "/e"}]},
        "rucio": {"instances": instances, "mount_path": draw(_mount_path)},
    }


EOS_PROFILE = Profile.model_validate(
    {"slug": "hep", "display_name": "HEP", "description": "d", "image": "x", "mounts": ["eos"]}
)
TOKEN = fake_jwt({"alg": "RS256", "typ": "at+jwt"}, {"sub": "a11ce", "aud": "rucio", "exp": 2000000000}, b"sig")


def _read_cfg(data: bytes, tmp: Path) -> dict[str, str]:
    """A file as the Rucio client 41.5.1 reads it: ``ConfigParser()`` (strict, interpolating) from disk."""
    path = tmp / "rucio.cfg"
    path.write_bytes(data)
    parser = configparser.ConfigParser()
    assert parser.read(path) == [str(path)]
    assert parser.sections() == ["client"]
    return dict(parser["client"])


def _check_secret(site: Settings, secret: dict[str, Any], unavailable: set[str], tmp: Path, schema: ModuleType) -> None:
    files = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    for inst in site.rucio.instances:
        got = _read_cfg(files[cfg_key(inst.name)], tmp)
        expected = {"rucio_host": inst.rucio_host, "auth_host": inst.auth_host, "ca_cert": inst.ca_cert}
        if inst.vo is not None:
            expected["vo"] = inst.vo
        if inst.name not in unavailable:
            expected |= {
                "oidc_audience": inst.token_exchange.audience,
                "oidc_scope": inst.token_exchange.scope,
                "oidc_issuer": site.iam.issuer,
                "auth_token_file_path": token_path(site.rucio, inst.name),
                "account": "alice",
            }
        assert {k: got.get(k) for k in expected} == expected
    config = json.loads(files["jupyter_server_config.json"])
    validate_extension(config, schema)
    for inst, rendered in zip(site.rucio.instances, config["RucioConfig"]["instances"], strict=True):
        ext = inst.extension
        wanted = {
            "rucio_base_url": inst.rucio_host,
            "rucio_auth_url": inst.auth_host,
            "rucio_webui_url": inst.webui_url,
            "rucio_ca_cert": inst.ca_cert,
            "site_name": inst.site_name,
            "vo": inst.vo,
            "app_id": ext.app_id,
            "oidc_file_name": token_path(site.rucio, inst.name),
        }
        if rendered["mode"] == "replica":
            paths = replica_paths(inst, site.storage)
            assert paths is not None
            wanted |= {"destination_rse": ext.destination_rse, "rse_mount_path": paths.rse_mount_path}
        assert {k: rendered.get(k) for k in wanted} == wanted
        assert rendered["display_name"].startswith(inst.display_name)


_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@_FUZZ
@given(_site(), st.sets(st.sampled_from(["lake", "cta"])))
def test_fuzz_accepted_settings_render_faithfully(
    extension_schema: ModuleType, tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any], failed: set[str]
) -> None:
    """Refused by the model (ValidationError), or every file renders and reads back to the model's values."""
    try:
        site = Settings.model_validate(data)
    except ValidationError:
        event("refused by the model")
        return
    event("accepted and rendered")
    instances = list(site.rucio.instances)
    ready = [i.name for i in instances if i.name not in failed]
    modes = extension_modes(site.rucio, EOS_PROFILE)
    secret = build_rucio_secret(
        site.rucio,
        instances,
        name="jupyter-alice-rucio",
        namespace="hub",
        tokens=dict.fromkeys(ready, TOKEN),
        accounts=dict.fromkeys(ready, "alice"),
        issuer=site.iam.issuer,
        modes=modes,
        replica=replica_paths_by_instance(site.rucio, site.storage),
        unavailable=dict.fromkeys(failed, "the IdP refused the token exchange (invalid_grant)"),
    )
    _check_secret(site, secret, failed, tmp_path_factory.mktemp("cfg"), extension_schema)


def _largest_site(char: str) -> dict[str, Any]:
    """Every value the model allows at its longest, in characters that take the most bytes once written."""
    value = char * MAX_VALUE_LENGTH
    url = ("https://r.example.org/" + value)[:MAX_VALUE_LENGTH]
    path = ("/" + value)[:MAX_VALUE_LENGTH]
    instances = [
        {
            "name": f"instance-{n:02d}-" + "n" * 49,
            "display_name": value,
            "rucio_host": url,
            "auth_host": url,
            "webui_url": url,
            "ca_cert": path,
            "vo": value,
            "site_name": value,
            "account_template": "{username}",
            "token_exchange": {"audience": value, "scope": ("openid profile " + value)[:MAX_VALUE_LENGTH]},
            "extension": {
                "destination_rse": value,
                "rse_mount": "eos",
                "rse_prefix": ("/" + value)[: MAX_VALUE_LENGTH - 2],
                "app_id": value,
            },
        }
        for n in range(MAX_INSTANCES)
    ]
    return {
        "iam": {"issuer": url, "client_id": "hub", "allowed_groups": ["escape"]},
        "storage": {"eos": [{"name": "eos", "eos_path": "/", "mount_path": "/e"}]},
        "rucio": {"instances": instances, "mount_path": ("/" + value)[:MAX_PATH_LENGTH]},
    }


@pytest.mark.parametrize("char", ["x", "é", "語", "\U0001f600"])
@pytest.mark.parametrize("ready", [True, False])
def test_the_largest_accepted_settings_fit_in_a_secret(char: str, ready: bool) -> None:
    """Kubernetes refuses a Secret whose data exceeds 1 MiB: the model's limits keep every accepted site below it."""
    site = Settings.model_validate(_largest_site(char))
    names = [i.name for i in site.rucio.instances]
    secret = build_rucio_secret(
        site.rucio,
        list(site.rucio.instances),
        name="jupyter-alice-rucio",
        namespace="hub",
        tokens=dict.fromkeys(names, TOKEN) if ready else {},
        accounts=dict.fromkeys(names, "a" * 25) if ready else {},
        issuer=site.iam.issuer,
        modes=extension_modes(site.rucio, EOS_PROFILE),
        replica=replica_paths_by_instance(site.rucio, site.storage),
        unavailable=None if ready else dict.fromkeys(names, "x" * 300),
    )
    size = sum(len(base64.b64decode(v)) for v in secret["data"].values())
    assert size < 1 << 20, f"{size} bytes"
