"""dask-gateway-server config for the local platform: what the dask-gateway chart's ConfigMaps say.

One file for both processes, as the chart has one ConfigMap each: the gateway API
(``dask-gateway-server --config``, templates/gateway/configmap.yaml) and the controller
(``dask-gateway-server kube-controller --config``, templates/controller/configmap.yaml). Per-run
values (addresses, the instance name, the hub's API URL) come from the JSON file in
``$DATALAKE_DASK_GATEWAY``, written by :mod:`localplatform.daskgateway`; nothing is templated.

Deviations from the chart, each because the platform has no cluster DNS and no pod network:
addresses are loopback ``host:port`` pairs instead of Service DNS names.
"""

import json
import os
import sys

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - provided by traitlets' config loader

run = json.loads(open(os.environ["DATALAKE_DASK_GATEWAY"]).read())  # noqa: SIM115

# templates/gateway/configmap.yaml
c.DaskGateway.log_level = run.get("log_level", "INFO")
c.DaskGateway.address = run["api_address"]
c.DaskGateway.backend_class = "dask_gateway_server.backends.kubernetes.KubeBackend"
c.KubeBackend.api_url = run["api_url"]
c.KubeBackend.gateway_instance = run["instance"]
c.KubeClusterConfig.image = run["image"]
c.KubeClusterConfig.namespace = run["namespace"]
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = run["jupyterhub_api_url"]
c.JupyterHubAuthenticator.jupyterhub_service_name = run["service_name"]
# The gateway's own hub API token, read from its file at start-up by the API only (the chart's
# gateway reads it from its Secret: hub_config/dask/gateway_bootstrap.py; its controller never
# sees it): never in the environment.
if "kube-controller" not in sys.argv[1:2]:
    c.JupyterHubAuthenticator.jupyterhub_api_token = open(run["api_token_file"]).read().strip()  # noqa: SIM115
simple_auth = "simple_auth_password_file" in run
if simple_auth:
    # Benchmarks only (no hub): the chart's `gateway.auth.type: simple`, one shared password.
    c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
    c.SimpleAuthenticator.password = open(run["simple_auth_password_file"]).read().strip()  # noqa: SIM115
# The chart's gateway.backend.{scheduler,worker} values (benchmarks: the stock configuration's).
for key, value in (run.get("cluster_config") or {}).items():
    setattr(c.KubeClusterConfig, key, value)

# datalake-hub's part (the chart's gateway.extraConfig): per-group limits, the notebook's image and
# its Rucio Secret for every cluster (hub_config.dask.gateway).
if "limits_file" in run:
    from hub_config.dask.gateway import configure_gateway

    # The dashboards' forwardAuth endpoint wraps whichever authenticator is in force (benchmarks:
    # the simple one, whose config section above still applies: the class is its subclass).
    base = None
    if simple_auth:
        from dask_gateway_server.auth import SimpleAuthenticator as base
    configure_gateway(c, limits_file=run["limits_file"], namespace=run["namespace"], authenticator=base)

# templates/controller/configmap.yaml
c.KubeController.address = run["controller_address"]
c.KubeController.api_url = run["api_url"]
c.KubeController.gateway_instance = run["instance"]
c.KubeController.proxy_prefix = "/"
c.KubeController.proxy_web_middlewares = [{"name": run["clusters_prefix_middleware"], "namespace": run["namespace"]}]
c.KubeController.log_level = run.get("log_level", "INFO")
