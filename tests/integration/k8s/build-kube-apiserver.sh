#!/usr/bin/env bash
# Build kube-apiserver from the k8s.io/kubernetes Go module (`make kube-apiserver` calls this).
#   build-kube-apiserver.sh VERSION OUT WORKDIR     e.g. v1.34.2 .vigil/k8s/bin/kube-apiserver .vigil/k8s/src
# The module as published has no staging/ tree (those are modules of their own, k8s.io/api and
# friends), so its `./staging/src/...` replace directives are pointed at the published v0.X.Y
# modules of the same release. The version is stamped the way Kubernetes' release builds do
# (hack/lib/version.sh): unstamped, the server reports v0.0.0 and charts' kubeVersion refuse it.
set -euo pipefail
version=$1 out=$2 work=$3
staging=v0.${version#v1.}          # v1.34.2 -> v0.34.2
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
src=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
test -d "$src" || { echo "go mod download k8s.io/kubernetes@$version gave no source directory" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$(dirname "$work")" && cp -r "$src" "$work" && chmod -R u+w "$work"
cd "$work"
rm -rf vendor go.work go.work.sum
for module in $(sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' go.mod); do
  go mod edit -replace "$module=$module@$staging"
done
major=${version#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
go build -trimpath -ldflags "$ldflags" -o "$OLDPWD/$out.tmp" ./cmd/kube-apiserver
mv "$OLDPWD/$out.tmp" "$OLDPWD/$out"
"$OLDPWD/$out" --version
