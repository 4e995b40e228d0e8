#!/usr/bin/env bash
# Build InfluxDB OSS 2 from source once and cache the influxd binary under ~/.cache/gridhub/.
# No reachable registry ships an influxd binary, so it is built from the Go module proxy (Go code)
# plus crates.io (libflux, Rust). Takes about 12 minutes on two cores; later runs exit at once.
set -euo pipefail

INFLUXDB_VERSION="2.7.12"
CACHE_ROOT="${GRIDHUB_CACHE:-$HOME/.cache/gridhub}"
TARGET="$CACHE_ROOT/influxdb-$INFLUXDB_VERSION"

if [[ -x "$TARGET/influxd" ]]; then
    echo "influxdb $INFLUXDB_VERSION: cached at $TARGET/influxd"
    exit 0
fi

for tool in go cargo gcc; do
    command -v "$tool" >/dev/null || { echo "build-influxdb: '$tool' is required but not on PATH" >&2; exit 1; }
done

mkdir -p "$CACHE_ROOT"
# The staging directory sits beside the target so the final mv is a rename on one file system.
STAGE="$(mktemp -d "$CACHE_ROOT/.influxdb-$INFLUXDB_VERSION.XXXXXX")"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gridhub-influxdb-build.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK" "$STAGE"' EXIT

export GOTOOLCHAIN=local GOFLAGS=-mod=mod
# libflux pins Rust 1.72, which rustup cannot fetch here; the stable toolchain builds it.
export RUSTUP_TOOLCHAIN=stable

module_dir() {  # module@version -> directory of the downloaded module in the read-only module cache
    (cd "$WORK" && go mod download -json "$1") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

echo "influxdb $INFLUXDB_VERSION: fetching sources from the Go module proxy"
cp -r "$(module_dir "github.com/influxdata/influxdb/v2@v$INFLUXDB_VERSION")" "$WORK/influxdb"
chmod -R u+w "$WORK/influxdb"
cd "$WORK/influxdb"
# The pinned toolchain line would make go try to fetch an older toolchain.
sed -i '/^toolchain /d' go.mod

FLUX_VERSION="$(go list -m -f '{{.Version}}' github.com/influxdata/flux)"
# pkg-config reads flux's version from a path ending in github.com/<owner>/flux@<version>.
FLUX_DIR="$WORK/src/github.com/influxdata/flux@$FLUX_VERSION"
mkdir -p "$(dirname "$FLUX_DIR")"
cp -r "$(module_dir "github.com/influxdata/flux@$FLUX_VERSION")" "$FLUX_DIR"
chmod -R u+w "$FLUX_DIR"
# Newer Rust warns where 1.72 did not, and flux's `strict` feature turns every warning into an error.
for lib in "$FLUX_DIR/libflux/flux/src/lib.rs" "$FLUX_DIR/libflux/flux-core/src/lib.rs"; do
    sed -i '1{/deny(warnings/d}' "$lib"
done
# The build uses the patched, writable copy of flux (Go and Rust) instead of the module cache's.
go mod edit -replace "github.com/influxdata/flux=$FLUX_DIR"

# influxdb's go.mod pins the pkg-config wrapper; cgo calls it, and it compiles libflux with cargo.
echo "influxdb $INFLUXDB_VERSION: building influxdata/pkg-config"
go build -o "$WORK/bin/pkg-config" github.com/influxdata/pkg-config
export PKG_CONFIG="$WORK/bin/pkg-config"

echo "influxdb $INFLUXDB_VERSION: building influxd (libflux, then Go; about 12 minutes on two cores)"
# The version is stamped as the release's own build does; -s -w leave out debug symbols (a third of the size).
go build -ldflags "-s -w -X main.version=v$INFLUXDB_VERSION -X main.commit=v$INFLUXDB_VERSION" \
    -o "$STAGE/influxd" ./cmd/influxd
"$STAGE/influxd" version

chmod 755 "$STAGE"
# Another build may have finished first: its result is as good as ours.
mv -T "$STAGE" "$TARGET" 2>/dev/null || [[ -x "$TARGET/influxd" ]]
echo "influxdb $INFLUXDB_VERSION: cached at $TARGET/influxd"
