#!/usr/bin/env bash
# Install the system programs the tests and `make run` need, when they are missing.
# Debian/Ubuntu only; as root it runs apt-get, otherwise it prints the exact command and fails.
set -euo pipefail

want=()
command -v redis-server >/dev/null 2>&1 || want+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || want+=(redis-tools)
if [ "${1:-}" != "--redis-only" ]; then
  command -v prometheus >/dev/null 2>&1 || want+=(prometheus)
  command -v promtool >/dev/null 2>&1 || want+=(prometheus)
  command -v prometheus-redis-exporter >/dev/null 2>&1 || want+=(prometheus-redis-exporter)
  command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
  command -v unzip >/dev/null 2>&1 || want+=(unzip)
  command -v openssl >/dev/null 2>&1 || want+=(openssl)  # TLS test certificates
  # The Docker Engine that builds the images (started by scripts/images.py, networking locked down), and
  # debootstrap for a local base image when no registry answers.
  command -v dockerd >/dev/null 2>&1 || want+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || want+=(debootstrap)
  # The one-node Kubernetes of `make e2e` (scripts/cluster): its container runtime, network and tools.
  command -v containerd >/dev/null 2>&1 || want+=(containerd)
  command -v runc >/dev/null 2>&1 || want+=(runc)
  [ -x /usr/lib/cni/bridge ] || want+=(containernetworking-plugins)
  command -v iptables >/dev/null 2>&1 || want+=(iptables)
  command -v conntrack >/dev/null 2>&1 || want+=(conntrack)
  command -v socat >/dev/null 2>&1 || want+=(socat)
  command -v gcc >/dev/null 2>&1 || want+=(gcc libc6-dev)  # the pause image, compiled from Kubernetes' source
fi
[ ${#want[@]} -eq 0 ] && exit 0

# Deduplicate (promtool and prometheus come from one package).
mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u)
cmd="apt-get install -y --no-install-recommends ${want[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing system packages: ${want[*]}" >&2
  echo "Run as root:  apt-get update && $cmd" >&2
  exit 1
fi
echo "Installing system packages: ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
$cmd -qq >/dev/null
# The Debian packages start system services; the project starts its own servers on free ports.
for svc in redis-server prometheus prometheus-redis-exporter prometheus-node-exporter; do
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
  service "$svc" stop >/dev/null 2>&1 || true
done
