#!/usr/bin/env bash
# Runs every test hotspan has, on a fresh machine too: installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
# A failing test's anyhow error without a captured backtrace: the message is what CI shows.
export RUST_LIB_BACKTRACE=0

need_apt=()
command -v kill >/dev/null 2>&1 || need_apt+=(procps)
# deploy/hotspan.service is checked with systemd-analyze verify.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# tests/tests/ui.rs opens the hotspan_ui page in headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The Kafka broker the kafka tests run: Java 17+ runs it, Maven fetches its jars (peers.sh).
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
# hotspan's kafka feature (which the tests build) compiles librdkafka: a C compiler, make,
# pkg-config and OpenSSL's headers (TLS and SCRAM).
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} for the tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

# The Go programs (tests/goservice) need Go 1.26, at /usr/local/go/bin on the project's machines
# but not always on PATH (CI's); Debian's golang-go is too old to stand in.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
./scripts/go-modules.sh # their modules, so the tests build them offline
# The OpenTelemetry Collector, Jaeger and the Kafka broker the peer tests run against, built or
# fetched once per version.
./scripts/peers.sh
cargo test --workspace "$@"
