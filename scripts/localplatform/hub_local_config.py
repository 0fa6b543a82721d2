"""JupyterHub config for the local platform: what z2jh's config does in a cluster, then our one line.

Per-run values (ports, paths, tokens) come from the JSON file in $DATALAKE_LOCAL_HUB, written by
`localplatform.hub`; nothing here is templated. The last line is exactly the chart's
`hub.extraConfig`, so the local hub runs the same `hub_config` code path as production.
"""

import json
import os

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - provided by JupyterHub

run = json.loads(open(os.environ["DATALAKE_LOCAL_HUB"]).read())  # noqa: SIM115

c.JupyterHub.bind_url = run["public_url"]
c.JupyterHub.hub_bind_url = run["hub_bind_url"]
c.JupyterHub.hub_connect_url = run["hub_bind_url"]
c.JupyterHub.db_url = run["db_url"]
c.JupyterHub.cookie_secret_file = run["cookie_secret_file"]
c.JupyterHub.pid_file = run["pid_file"]
c.JupyterHub.cleanup_servers = False
c.JupyterHub.log_level = run.get("log_level", "INFO")
# The proxy runs apart, as z2jh runs it: the platform starts it; the hub only uses its API.
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = run["proxy_api_url"]
c.ConfigurableHTTPProxy.auth_token = run["proxy_auth_token"]

c.KubeSpawner.namespace = run["namespace"]
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
c.KubeSpawner.port = 8888
c.KubeSpawner.image_pull_policy = "IfNotPresent"

c.JupyterHub.services = [{"name": "datalake-local", "api_token": run["service_token"]}]
c.JupyterHub.load_roles = [
    {
        "name": "datalake-local",
        "services": ["datalake-local"],
        "scopes": ["admin:users", "admin:servers", "admin:groups", "read:hub", "access:servers", "admin:auth_state"],
    }
]
# jupyterhub-idle-culler as a hub-managed service with its own role, as z2jh's `cull.*` values
# make it (built by localplatform.cull; absent when `cull.enabled` is false).
if run.get("culler"):
    c.JupyterHub.services.append(run["culler"]["service"])
    c.JupyterHub.load_roles.append(run["culler"]["role"])
if run.get("metrics_token"):
    # The platform's Prometheus, as a site's: a service whose token may only read /hub/metrics.
    c.JupyterHub.services.append({"name": "prometheus", "api_token": run["metrics_token"]})
    c.JupyterHub.load_roles.append({"name": "metrics", "services": ["prometheus"], "scopes": ["read:metrics"]})

if os.environ.get("DATALAKE_LOCAL_HUB_STOCK") != "1":
    # Unset except for the benchmarks' stock-JupyterHub baseline, which reuses the plumbing above.
    from hub_config.apply import apply_from_file

    apply_from_file(c)
