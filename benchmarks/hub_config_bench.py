"""JupyterHub config for benchmark hubs: ours (the local platform's config) or a plain baseline.

``$DATALAKE_BENCH_KIND`` picks:

* ``ours`` — exactly ``scripts/localplatform/hub_local_config.py`` (z2jh-like plumbing, then our
  one line ``apply_from_file(c)``), executed in this file's namespace;
* ``baseline-auth-state`` — the baseline with ``enable_auth_state`` (a reference for logins);
* ``baseline`` — the same file's plumbing (ports, proxy, namespace, service token; with
  ``$DATALAKE_LOCAL_HUB_STOCK=1`` it skips our line) plus stock
  ``KubeSpawner`` and ``GenericOAuthenticator`` against the same IdP and no hooks: what a plain
  z2jh deployment for ESCAPE IAM would configure. Same scopes and ``prompt=consent`` as ours, so
  the IdP does the same work for both and any difference is the hub's.

Then, for both: the pod command is the minimal responder (``benchmarks/responder.py``, its source
passed with ``python3 -c``; 200 real notebook servers do not fit in 2 cores) and the same generous
timeouts, so a storm measures the hub and the control plane, not a timeout.
"""

import json
import os
from pathlib import Path

import yaml

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - provided by JupyterHub

KIND = os.environ.get("DATALAKE_BENCH_KIND", "ours")
REPO = Path(os.environ["PYTHONPATH"].split(os.pathsep)[0])
LOCAL_CONFIG = REPO / "scripts" / "localplatform" / "hub_local_config.py"

if os.environ.get("DATALAKE_BENCH_TRACEMALLOC"):
    # Profiling only (docs/performance.md says how): Python allocations traced from here, before
    # either hub's classes are imported (ours imports them in the local config below, stock later);
    # SIGUSR2 dumps a snapshot next to the hub's database for `tracemalloc` to compare ours/stock.
    import signal
    import time
    import tracemalloc

    tracemalloc.start(int(os.environ["DATALAKE_BENCH_TRACEMALLOC"]))
    _snapshots = Path(os.environ["DATALAKE_LOCAL_HUB"]).parent

    def _dump_snapshot(*_: object) -> None:
        tracemalloc.take_snapshot().dump(str(_snapshots / f"tracemalloc-{KIND}-{int(time.time())}.snap"))

    signal.signal(signal.SIGUSR2, _dump_snapshot)

if KIND != "ours":
    os.environ["DATALAKE_LOCAL_HUB_STOCK"] = "1"  # the local config's plumbing only, none of ours
exec(compile(LOCAL_CONFIG.read_text(), str(LOCAL_CONFIG), "exec"), {"get_config": get_config})  # noqa: F821
if KIND != "ours":
    run = json.loads(Path(os.environ["DATALAKE_LOCAL_HUB"]).read_text())
    settings = yaml.safe_load(Path(os.environ["DATALAKE_SETTINGS"]).read_text())
    iam = settings["iam"]
    issuer = iam["issuer"]
    c.JupyterHub.authenticator_class = "generic-oauth"
    c.GenericOAuthenticator.client_id = iam["client_id"]
    c.GenericOAuthenticator.client_secret = Path(iam["client_secret"]["file"]).read_text().strip()
    c.GenericOAuthenticator.oauth_callback_url = f"{run['public_url']}hub/oauth_callback"
    c.GenericOAuthenticator.authorize_url = f"{issuer}auth"
    c.GenericOAuthenticator.token_url = f"{issuer}token"
    c.GenericOAuthenticator.userdata_url = f"{issuer}userinfo"
    c.GenericOAuthenticator.scope = ["openid", "profile", "email", "offline_access", "wlcg.groups"]
    c.GenericOAuthenticator.username_claim = "preferred_username"
    c.GenericOAuthenticator.extra_authorize_params = {"prompt": "consent"}
    c.GenericOAuthenticator.http_request_kwargs = {"ca_certs": iam["ca_bundle"]}
    c.GenericOAuthenticator.manage_groups = True
    c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
    c.GenericOAuthenticator.allowed_groups = {"escape"}
    c.GenericOAuthenticator.admin_groups = {"escape/admins"}

    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    # Both hubs share the namespace: distinct pod names keep them from deleting each other's pods.
    c.KubeSpawner.pod_name_template = "baseline-{user_server}"
    if KIND == "baseline-auth-state":
        # Reference for the logins figure only: stock, but storing the tokens as ours must (the
        # Rucio exchange and rotation need them), so the two can be told apart from the rest.
        c.GenericOAuthenticator.enable_auth_state = True
    profile_list = os.environ.get("DATALAKE_BENCH_PROFILE_LIST")
    if profile_list:  # the same entries ours offers, as a static list (what stock z2jh users write)
        c.KubeSpawner.profile_list = json.loads(Path(profile_list).read_text())

# The restart scenario reads JupyterHub's own `jupyterhub_init_spawners_duration_seconds` (and, for
# ours, the rotation counters) from /hub/metrics with the benchmark's service token.
for role in c.JupyterHub.load_roles:
    if role["name"] == "datalake-local":
        role["scopes"] = [*role["scopes"], "read:metrics"]

python = os.environ.get("DATALAKE_BENCH_PYTHON", "python3")
# The responder travels in the pod's command (`python3 -c <source>`), not as a path into the
# checkout: pods see the node's filesystem through their own mount namespace, where /tmp (and so a
# clone under /tmp) is private, as it would be on a real node that has no checkout at all.
responder = Path(os.environ["DATALAKE_BENCH_RESPONDER"]).read_text()
for cls in ("KubeSpawner", "DatalakeSpawner"):
    c[cls].cmd = [python, "-c", responder]
    c[cls].start_timeout = 300
    c[cls].http_timeout = 300
