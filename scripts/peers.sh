#!/usr/bin/env bash
# Builds the peers the black-box tests run against (a minimal OpenTelemetry Collector, Jaeger)
# from the Go modules in tests/peers/, once per version and module contents, into
# ${XDG_CACHE_HOME:-~/.cache}/hotspan/<peer>-<version>-<key>/, fetches the Apache Kafka broker's
# jars (tests/peers/kafka/pom.xml) into kafka-<version>/libs, and prints where each one is.
# Nothing is rebuilt while the modules are unchanged; two runs at once are safe (each builds
# under a temporary name, then renames).
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/hotspan"
mkdir -p "$cache"


# The version of `module` that tests/peers/<dir>/go.mod requires.
version_of() {
  local dir=$1 module=$2 v
  v=$(awk -v m="$module" '$1 == m && $2 ~ /^v/ { sub(/^v/, "", $2); print $2; exit }' "tests/peers/$dir/go.mod")
  [ -n "$v" ] || { echo "peers.sh: tests/peers/$dir/go.mod does not require $module" >&2; exit 1; }
  echo "$v"
}

# build NAME DIR VERSION PACKAGE: the binary NAME from PACKAGE in module tests/peers/DIR, as
# $cache/NAME-VERSION-KEY/NAME. KEY is the start of a stamp of the module's files (the sha256
# of go.mod, go.sum and the .go files, concatenated in name order; tests/src/peers.rs computes
# the same), so branches that build the peer with different components each keep their own
# build instead of replacing each other's.
build() {
  local name=$1 dir=$2 version=$3 package=$4
  command -v go >/dev/null 2>&1 || {
    echo "peers.sh: the Go toolchain is needed to build the peers (Go 1.26: /usr/local/go/bin on PATH)" >&2
    exit 1
  }
  local stamp
  stamp=$(find "tests/peers/$dir" -maxdepth 1 -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) \
    | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1)
  local target="$cache/$name-$version-${stamp:0:16}"
  # A build of the same files from before the key was in the name is copied, not rebuilt (and
  # left in place: a checkout without the key may still be using it).
  local unkeyed="$cache/$name-$version"
  if [ ! -e "$target" ] && [ -x "$unkeyed/$name" ] && [ "$(cat "$unkeyed/stamp" 2>/dev/null)" = "$stamp" ]; then
    local copy
    copy=$(mktemp -d "$cache/.$name-$version.XXXXXX")
    cp "$unkeyed/$name" "$unkeyed/stamp" "$copy/" && chmod 755 "$copy" && mv -T "$copy" "$target" 2>/dev/null \
      || rm -rf "$copy"
  fi
  if [ -x "$target/$name" ] && [ "$(cat "$target/stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$name $version: $target/$name"
    return
  fi
  local tmp
  tmp=$(mktemp -d "$cache/.$name-$version.XXXXXX")
  echo "$name $version: building from tests/peers/$dir (a few minutes the first time)" >&2
  local start=$SECONDS
  if ! go build -C "tests/peers/$dir" -buildvcs=false -trimpath -ldflags='-s -w' -o "$tmp/$name" "$package"; then
    rm -rf "$tmp"
    echo "peers.sh: building $name $version failed" >&2
    exit 1
  fi
  echo "$stamp" >"$tmp/stamp"
  echo "$name $version: built in $((SECONDS - start))s" >&2
  chmod 755 "$tmp"
  # Whoever renames first wins. Another run's build of the same sources stays (tests may be
  # using it); a stale build is moved aside first, then removed.
  if [ -x "$target/$name" ] && [ "$(cat "$target/stamp" 2>/dev/null)" = "$stamp" ]; then
    rm -rf "$tmp"
    echo "$name $version: $target/$name"
    return
  fi
  if [ -e "$target" ]; then
    local old
    old=$(mktemp -d "$cache/.$name-$version.old.XXXXXX")
    mv -T "$target" "$old/x" 2>/dev/null || true
    rm -rf "$old"
  fi
  if mv -T "$tmp" "$target" 2>/dev/null; then
    :
  else
    rm -rf "$tmp" # another run put its build in place meanwhile
  fi
  echo "$name $version: $target/$name"
}


# kafka_jars: Apache Kafka (the broker, run in KRaft mode by tests/src/kafka.rs with the
# machine's Java 17+) as kafka_2.13 and its runtime dependencies from Maven Central, copied into
# $cache/kafka-VERSION/libs. A stamp of the pom says what it was fetched for.
kafka_jars() {
  local pom=tests/peers/kafka/pom.xml version target stamp tmp
  version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
  [ -n "$version" ] || { echo "peers.sh: $pom has no <kafka.version>" >&2; exit 1; }
  target="$cache/kafka-$version"
  stamp=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -d "$target/libs" ] && [ "$(cat "$target/stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "kafka $version: $target/libs"
    return
  fi
  command -v mvn >/dev/null 2>&1 || {
    echo "peers.sh: Maven is needed to fetch the Kafka broker (scripts/test.sh installs it: apt-get install maven)" >&2
    exit 1
  }
  echo "kafka $version: fetching the broker's jars from Maven Central" >&2
  tmp=$(mktemp -d "$cache/.kafka-$version.XXXXXX")
  if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >&2; then
    rm -rf "$tmp"
    echo "peers.sh: fetching Kafka $version failed" >&2
    exit 1
  fi
  echo "$stamp" >"$tmp/stamp"
  chmod 755 "$tmp"
  if [ -d "$target/libs" ] && [ "$(cat "$target/stamp" 2>/dev/null)" = "$stamp" ]; then
    rm -rf "$tmp"
  else
    if [ -e "$target" ]; then
      local old
      old=$(mktemp -d "$cache/.kafka-$version.old.XXXXXX")
      mv -T "$target" "$old/x" 2>/dev/null || true
      rm -rf "$old"
    fi
    mv -T "$tmp" "$target" 2>/dev/null || rm -rf "$tmp"
  fi
  echo "kafka $version: $target/libs"
}

# With arguments (otelcol, jaeger, kafka), only the peers named: bench/kafka.sh wants the broker
# alone.
peers=("$@")
wanted() { [ ${#peers[@]} -eq 0 ] || [[ " ${peers[*]} " == *" $1 "* ]]; }
if wanted otelcol; then
  build otelcol otelcol "$(version_of otelcol go.opentelemetry.io/collector/otelcol)" .
fi
if wanted jaeger; then
  build jaeger jaeger "$(version_of jaeger github.com/jaegertracing/jaeger)" github.com/jaegertracing/jaeger/cmd/jaeger
fi
if wanted kafka; then
  kafka_jars
fi
