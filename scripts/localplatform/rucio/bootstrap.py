"""Fill a fresh Rucio database for the local platform; runs inside the Rucio *server* venv.

``localplatform.rucio_server`` runs ``<server venv>/bin/python bootstrap.py SPEC RESULT`` with
``RUCIO_CONFIG`` pointing at the rendered server config. It talks to the database directly (no
HTTP, no token) so a cold bootstrap takes about a second. Accounts, identities and scopes go
through Rucio's *gateway* layer, which applies the same schema checks as the REST API: a fixture
username Rucio would refuse over REST is refused here too, recorded in the result with Rucio's
message and skipped, instead of being smuggled in through the core layer.

SPEC (JSON): ``rse`` (the EOS RSE), ``user_rse`` (the user-writable one), ``rses`` {name: {"hostname",
"port", "prefix", "dir", "user_upload"}} (WebDAV endpoints from ``localplatform.rucio_storage``),
``issuer`` (or null: no OIDC identities), ``users``: a list of ``{"username", "account", "sub", "email"}``,
``shared_scope``.
RESULT (JSON): ``accounts`` {username: account}, ``skipped`` {username: reason}, ``scopes``
{account: scope}, ``dids`` [scope:name], ``files`` {scope:name: path on the EOS RSE's disk},
``remote_files`` {scope:name: path on the user RSE's disk}, ``rules`` {dataset DID: RSE}.

Every sample dataset gets a rule (so its replicas are protected and a panel shows them as locked);
files are written straight into the WebDAV servers' directories (the storage's disk) and registered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import zlib
from pathlib import Path
from typing import Any

from rucio.common.exception import RucioException
from rucio.common.types import InternalAccount, InternalScope
from rucio.core import did as did_core
from rucio.core import replica
from rucio.core import rule as rule_core
from rucio.core.rse import get_rse_id
from rucio.db.sqla.constants import DIDType
from rucio.db.sqla.util import build_database, create_base_vo, create_root_account
from rucio.gateway import account as account_gw
from rucio.gateway import account_limit as account_limit_gw
from rucio.gateway import identity as identity_gw
from rucio.gateway import rse as rse_gw
from rucio.gateway import scope as scope_gw
from rucio.rse.translation import RSEDeterministicTranslation

log = logging.getLogger("rucio-bootstrap")

ROOT = "root"
ACCOUNT_QUOTA_BYTES = 10 * 1024**3
"""Per-account limit on each RSE (Rucio's default is 0): lets users upload to the user RSE and make
rules ("make available") to the EOS RSE."""


def _checksums(data: bytes) -> dict[str, Any]:
    return {
        "bytes": len(data),
        "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
        "md5": hashlib.md5(data).hexdigest(),  # noqa: S324 - Rucio's checksum, not security
    }


def _make_rse(rse: str, endpoint: dict[str, Any]) -> None:
    """A deterministic WebDAV RSE whose PFNs are ``https://host:port<prefix><scope path>/<name>``.

    lfn2pfn ``identity`` (Rucio turns ``user.alice`` into ``user/alice``) rather than the default
    ``hash``, so the tree of the EOS RSE, mounted into notebooks at ``/eos/lake``, reads like the
    DID names a user sees in ``rucio list-dids``. Scheme ``https`` with Rucio's ``webdav`` protocol
    (``requests``; the ``davs`` scheme needs gfal2, which notebooks do not have).
    """
    rse_gw.add_rse(rse, issuer=ROOT, deterministic=True)
    rse_gw.add_rse_attribute(rse, "lfn2pfn_algorithm", "identity", issuer=ROOT)
    rse_gw.add_rse_attribute(rse, "naming_convention", "identity", issuer=ROOT)
    protocol = {
        "scheme": "https",
        "hostname": endpoint["hostname"],
        "port": int(endpoint["port"]),
        "prefix": endpoint["prefix"],
        "impl": "rucio.rse.protocols.webdav.Default",
        "domains": {
            "lan": {"read": 1, "write": 1, "delete": 1},
            "wan": {"read": 1, "write": 1, "delete": 1, "third_party_copy_read": 1, "third_party_copy_write": 1},
        },
    }
    rse_gw.add_protocol(rse, issuer=ROOT, data=protocol)
    if endpoint.get("user_upload"):
        # datalake_rucio_policy lets accounts upload (add and validate replicas) here.
        rse_gw.add_rse_attribute(rse, "user_upload", True, issuer=ROOT)


def _register_files(
    rse: str, rse_dir: Path, scope: str, account: str, files: dict[str, bytes], dataset: str
) -> dict[str, str]:
    """Write ``files`` on the RSE's disk, register them as replicas, attach them to ``dataset``, and
    protect the dataset with a rule (one copy on ``rse``, owned by ``account``)."""
    rse_id = get_rse_id(rse=rse)
    int_scope = InternalScope(scope)
    int_account = InternalAccount(account)
    # Rucio's own lfn2pfn, so the files sit exactly where the RSE's PFNs point.
    translation = RSEDeterministicTranslation(rse=rse, rse_attributes={"lfn2pfn_algorithm": "identity"})
    entries = []
    paths: dict[str, str] = {}
    for name, data in files.items():
        path = rse_dir / translation.path(scope, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
        entries.append({"scope": int_scope, "name": name, **_checksums(data)})
        paths[f"{scope}:{name}"] = str(path)
    replica.add_replicas(rse_id=rse_id, files=entries, account=int_account)
    did_core.add_did(scope=int_scope, name=dataset, did_type=DIDType.DATASET, account=int_account)
    did_core.attach_dids(
        scope=int_scope,
        name=dataset,
        dids=[{"scope": int_scope, "name": name} for name in files],
        account=int_account,
    )
    rule_core.add_rule(
        dids=[{"scope": int_scope, "name": dataset}],
        account=int_account,
        copies=1,
        rse_expression=rse,
        grouping="DATASET",
        weight=None,
        lifetime=None,
        locked=False,
        subscription_id=None,
        ignore_availability=True,
        ignore_account_limit=account == ROOT,  # root has no quota; users' rules count against theirs
    )
    return paths


def _user(spec: dict[str, Any], user: dict[str, Any], result: dict[str, Any]) -> None:
    """A fixture user's account, OIDC identity, scope ``user.<account>``, quotas and sample dataset."""
    rse: str = spec["rse"]
    username: str = user["username"]
    account: str = user["account"]
    try:
        account_gw.add_account(account, "USER", user.get("email") or f"{account}@localhost", issuer=ROOT)
    except RucioException as err:
        result["skipped"][username] = f"Rucio refused account {account!r}: {err}"
        log.warning("skipping fixture user %r: %s", username, err)
        return
    if spec.get("issuer"):
        identity = f"SUB={user['sub']}, ISS={spec['issuer']}"
        identity_gw.add_account_identity(
            identity, "OIDC", account, user.get("email") or f"{account}@localhost", issuer=ROOT, default=True
        )
    scope = f"user.{account}"[:25]
    scope_gw.add_scope(scope, account, issuer=ROOT)
    for name in spec["rses"]:
        account_limit_gw.set_local_account_limit(account, name, ACCOUNT_QUOTA_BYTES, issuer=ROOT)
    result["files"].update(
        _register_files(
            rse,
            Path(spec["rses"][rse]["dir"]),
            scope,
            account,
            {"hello.txt": f"Hello {username}, this file is on {rse}.\n".encode(), "numbers.csv": b"x,y\n1,2\n3,4\n"},
            "my-first-dataset",
        )
    )
    result["dids"] += [f"{scope}:my-first-dataset", f"{scope}:hello.txt", f"{scope}:numbers.csv"]
    result["rules"][f"{scope}:my-first-dataset"] = rse
    result["accounts"][username] = account
    result["scopes"][account] = scope


def bootstrap(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the schema, root, the RSEs, the users' accounts, identities, scopes and sample data."""
    rse: str = spec["rse"]
    user_rse: str = spec["user_rse"]
    build_database()
    create_base_vo()
    create_root_account()
    for name, endpoint in spec["rses"].items():
        _make_rse(name, endpoint)

    result: dict[str, Any] = {
        "accounts": {},
        "skipped": {},
        "scopes": {},
        "dids": [],
        "files": {},
        "remote_files": {},
        "rules": {},
    }
    shared: str = spec["shared_scope"]
    scope_gw.add_scope(shared, ROOT, issuer=ROOT)
    samples = {"README.txt": b"Shared sample data of the local data lake.\n", "events.csv": b"run,event\n1,1\n1,2\n"}
    result["files"].update(_register_files(rse, Path(spec["rses"][rse]["dir"]), shared, ROOT, samples, "samples"))
    result["dids"] += [f"{shared}:samples", f"{shared}:README.txt", f"{shared}:events.csv"]
    result["rules"][f"{shared}:samples"] = rse
    # On the user RSE only: what "make available" (a rule to the EOS RSE) has to replicate.
    remote = {"calibration.csv": b"channel,gain\n1,0.98\n2,1.02\n3,1.00\n"}
    result["remote_files"].update(
        _register_files(user_rse, Path(spec["rses"][user_rse]["dir"]), shared, ROOT, remote, "remote-samples")
    )
    result["dids"] += [f"{shared}:remote-samples", f"{shared}:calibration.csv"]
    result["rules"][f"{shared}:remote-samples"] = user_rse

    for user in spec["users"]:
        _user(spec, user, result)
    return result


def main(argv: list[str]) -> int:
    """Entry point: ``bootstrap.py SPEC_JSON RESULT_JSON``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    spec = json.loads(Path(argv[1]).read_text())
    result = bootstrap(spec)
    Path(argv[2]).write_text(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
