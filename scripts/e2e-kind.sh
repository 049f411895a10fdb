#!/usr/bin/env bash
# End to end on a throwaway kind cluster: build and load the images, helm install, change the CacheConfig,
# check Redis took it, run `helm test`, use the sidecar through a port-forward, delete the cluster.
# Without Docker or kind it says so and exits 0 (the build machines have neither).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.tools/bin:$PATH"

skip() { echo "e2e SKIPPED: $*"; exit 0; }
command -v docker >/dev/null 2>&1 || skip "docker is not installed"
timeout 20 docker info >/dev/null 2>&1 || skip "no Docker daemon answers (docker info failed)"
command -v kind >/dev/null 2>&1 || skip "kind is not installed (https://kind.sigs.k8s.io)"
command -v helm >/dev/null 2>&1 || skip "helm is missing: run scripts/ensure-helm.sh"
command -v kubectl >/dev/null 2>&1 || skip "kubectl is missing: run scripts/ensure-helm.sh"

cluster="mobius-e2e-$$"
ns=mobius
release=mobius-cache
tag=e2e
step() { echo; echo "== $*"; }
cleanup() {
  [ -n "${pf_pid:-}" ] && kill "$pf_pid" 2>/dev/null || true
  step "delete the cluster $cluster"
  kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() {
  echo "e2e FAILED: $*" >&2
  kubectl -n "$ns" get pods,cacheconfigs -o wide >&2 || true
  kubectl -n "$ns" logs deploy/$release-operator --tail=50 >&2 || true
  exit 1
}

step "create the kind cluster $cluster"
kind create cluster --name "$cluster" --wait 120s
kubectl config use-context "kind-$cluster" >/dev/null

step "build and load the images"
docker build -q -f sidecar/Dockerfile -t mobius/cache-sidecar:$tag .
docker build -q -f operator/Dockerfile -t mobius/cache-operator:$tag .
kind load docker-image --name "$cluster" mobius/cache-sidecar:$tag mobius/cache-operator:$tag

step "helm install"
helm install "$release" charts/mobius-cache -n "$ns" --create-namespace --wait --timeout 5m \
  --set operator.image.tag=$tag --set sidecar.image.tag=$tag --set example.enabled=true \
  --set redis.maxmemory=200mb --set redis.resources.requests.memory=256Mi --set redis.resources.limits.memory=256Mi

step "the default CacheConfig becomes Ready"
kubectl -n "$ns" wait cacheconfig/$release --for=condition=Ready --timeout=120s || fail "CacheConfig not Ready"

step "change maxMemory and policy in the CacheConfig"
kubectl -n "$ns" patch cacheconfig/$release --type merge \
  -p '{"spec": {"maxMemory": "150mb", "evictionPolicy": "allkeys-lfu"}}'
deadline=$((SECONDS + 120))
want="157286400 allkeys-lfu"
while :; do
  got=$(kubectl -n "$ns" exec sts/$release-redis -c redis -- sh -c \
    'echo "$(redis-cli --no-raw CONFIG GET maxmemory | tail -1 | tr -d "\"") $(redis-cli CONFIG GET maxmemory-policy | tail -1)"' \
    2>/dev/null || true)
  [ "$got" = "$want" ] && break
  [ $SECONDS -lt $deadline ] || fail "Redis has '$got', expected '$want'"
  sleep 2
done
echo "CONFIG GET in the Redis pod: $got"
kubectl -n "$ns" wait cacheconfig/$release --for=condition=Ready --timeout=60s || fail "not Ready after the change"

step "helm test"
helm test "$release" -n "$ns" --logs --timeout 3m || fail "helm test"

step "the sidecar through a port-forward"
kubectl -n "$ns" rollout status deploy/$release-example --timeout=120s
port=18787
kubectl -n "$ns" port-forward deploy/$release-example $port:8787 >/dev/null 2>&1 &
pf_pid=$!
deadline=$((SECONDS + 30))
until curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || fail "no port-forward to the sidecar"
  sleep 1
done
curl -fsS -X PUT -H 'Content-Type: application/json' --data '{"hello": "kind"}' \
  "http://127.0.0.1:$port/v1/cache/config:e2e?ttl=60" || fail "PUT through the sidecar"
body=$(curl -fsS -D /dev/stderr "http://127.0.0.1:$port/v1/cache/config:e2e") || fail "GET through the sidecar"
[ "$body" = '{"hello": "kind"}' ] || fail "GET returned '$body'"
echo "sidecar round trip: $body"

step "helm upgrade keeps the Redis password"
before=$(kubectl -n "$ns" get secret $release-redis -o jsonpath='{.data.redis-password}')
helm upgrade "$release" charts/mobius-cache -n "$ns" --reuse-values --wait --timeout 5m
after=$(kubectl -n "$ns" get secret $release-redis -o jsonpath='{.data.redis-password}')
[ "$before" = "$after" ] || fail "the upgrade changed the Redis password"

echo
echo "e2e PASSED"
