#!/usr/bin/env bash
# Downloads, through the Go module proxy, the modules of every Go module in the repository
# (each go.mod outside target/) into Go's module cache. The tests build the Go programs with
# GOPROXY=off and -mod=readonly: after this script they build offline, and a module missing
# from the cache is an error instead of a download in the middle of a test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Go is installed at /usr/local/go on the project's machines, not always on PATH (CI's PATH).
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  echo "go-modules.sh: no Go toolchain: install Go (the version the go.mod files name, or newer) at /usr/local/go or put its bin/ on PATH" >&2
  exit 1
fi
# The tests build with the same toolchain, never a downloaded one.
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly GOWORK=off

found=0
while IFS= read -r mod; do
  dir=$(dirname "$mod")
  found=$((found + 1))
  echo "go-modules.sh: go mod download in $dir ($(go version | cut -d' ' -f3), cache $(go env GOMODCACHE))"
  if ! (cd "$dir" && go mod download); then
    echo "go-modules.sh: go mod download failed in $dir" >&2
    exit 1
  fi
done < <(find . \( -name target -o -name .git \) -prune -o -name go.mod -type f -print | sort)
if [ "$found" -eq 0 ]; then
  echo "go-modules.sh: found no go.mod (looked from $(pwd))" >&2
  exit 1
fi
