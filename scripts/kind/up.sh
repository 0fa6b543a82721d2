#!/usr/bin/env bash
# datalake-hub on a workstation with Docker: kind cluster, images built and loaded, the dev IdP, the
# chart installed. Not exercised on the project's CI machines (no container engine there).
#
#   scripts/kind/up.sh                       # base image only
#   IMAGES="datalake-base datalake-hep" scripts/kind/up.sh
#   scripts/kind/down.sh
#
# Needs: docker, kind, kubectl, helm 3, openssl, curl, make; and in /etc/hosts:
#   127.0.0.1 dev-idp.datalake.test
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/scripts/kind"
CLUSTER="${CLUSTER:-datalake-hub}"
NAMESPACE="${NAMESPACE:-datalake}"
IMAGES="${IMAGES:-datalake-base}"
STATE="${STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/datalake-hub/kind}"
ISSUER="https://dev-idp.datalake.test:8443/"

for tool in docker kind kubectl helm openssl curl make; do
  command -v "$tool" >/dev/null || { echo "kind workflow: $tool is not installed" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "kind workflow: no Docker daemon" >&2; exit 1; }
if ! grep -qE '^127\.0\.0\.1[[:space:]].*\bdev-idp\.datalake\.test\b' /etc/hosts; then
  echo "kind workflow: add '127.0.0.1 dev-idp.datalake.test' to /etc/hosts (the IdP's issuer host)" >&2
  exit 1
fi
mkdir -p "$STATE"
chmod 700 "$STATE"

echo "== kind cluster $CLUSTER"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config "$HERE/kind-config.yaml" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

echo "== images: $IMAGES, dev IdP"
for image in $IMAGES; do
  make -C "$REPO/images" "$image" TAG=dev
  kind load docker-image --name "$CLUSTER" "$image:dev"
done
docker build -t datalake-dev-idp:dev -f "$HERE/idp/Dockerfile" "$REPO"
kind load docker-image --name "$CLUSTER" datalake-dev-idp:dev

echo "== dev IdP (CA, certificate, config)"
if [[ ! -f "$STATE/ca.pem" ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=datalake-hub kind dev CA" \
    -keyout "$STATE/ca.key" -out "$STATE/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=dev-idp.datalake.test" \
    -keyout "$STATE/server.key" -out "$STATE/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:dev-idp.datalake.test\nextendedKeyUsage=serverAuth\n' > "$STATE/server.ext"
  openssl x509 -req -in "$STATE/server.csr" -CA "$STATE/ca.pem" -CAkey "$STATE/ca.key" -CAcreateserial \
    -days 365 -extfile "$STATE/server.ext" -out "$STATE/server.pem" 2>/dev/null
  openssl rand -hex 24 > "$STATE/admin-token"
  openssl rand -hex 24 > "$STATE/client-secret"
  openssl rand -hex 32 > "$STATE/crypt-key"
fi
ADMIN_TOKEN="$(cat "$STATE/admin-token")"
cat > "$STATE/config.json" <<JSON
{"host": "0.0.0.0", "port": 8443, "issuer": "$ISSUER",
 "tls_cert": "/etc/idp/server.pem", "tls_key": "/etc/idp/server.key", "users_file": "/idp/users.json",
 "jwks_file": "/var/lib/idp/jwks.json", "store_file": "/var/lib/idp/store.json",
 "cookie_keys": ["$(openssl rand -hex 16)"], "admin_token": "$ADMIN_TOKEN",
 "access_token_ttl": 3600, "id_token_ttl": 3600, "refresh_token_ttl": 1209600}
JSON
kubectl apply -f "$HERE/idp/idp.yaml"
kubectl --namespace datalake-idp create secret generic dev-idp \
  --from-file="$STATE/config.json" --from-file="$STATE/server.pem" --from-file="$STATE/server.key" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl --namespace datalake-idp rollout restart deployment/dev-idp
kubectl --namespace datalake-idp rollout status deployment/dev-idp --timeout 180s

echo "== register the hub at the IdP"
curl --fail --silent --show-error --cacert "$STATE/ca.pem" \
  -H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json" \
  -d "{\"client_id\": \"datalake-hub\", \"client_secret\": \"$(cat "$STATE/client-secret")\",
       \"redirect_uris\": [\"http://127.0.0.1:8080/hub/oauth_callback\"],
       \"grant_types\": [\"authorization_code\", \"refresh_token\", \"urn:ietf:params:oauth:grant-type:token-exchange\"],
       \"response_types\": [\"code\"], \"token_endpoint_auth_method\": \"client_secret_basic\"}" \
  "${ISSUER}admin/clients" >/dev/null

echo "== datalake-hub"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl --namespace "$NAMESPACE" create secret generic datalake-hub-iam \
  --from-file=client-secret="$STATE/client-secret" --from-file=crypt-key="$STATE/crypt-key" \
  --dry-run=client -o yaml | kubectl apply -f -
helm dependency build "$REPO/chart"
helm upgrade --install datalake-hub "$REPO/chart" --namespace "$NAMESPACE" \
  -f "$HERE/values-kind.yaml" \
  --set-file "jupyterhub.hub.extraFiles.dev-idp-ca.stringData=$STATE/ca.pem" \
  --wait --timeout 10m
helm test datalake-hub --namespace "$NAMESPACE"

echo
echo "datalake-hub: http://127.0.0.1:8080/  (users and passwords: scripts/localplatform/idp/users.json)"
echo "IdP CA for your browser, if it asks: $STATE/ca.pem"
