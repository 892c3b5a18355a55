#!/usr/bin/env bash
# noida-db 0.2.3, the Kafka-protocol broker with transactions that tests/exactly_once.rs runs
# against (DESIGN.md), built from its crates.io source with one fix of vigil's.
#
# Usage: scripts/noida-db.sh install
#   install   build and cargo-install the fixed noida-db, unless `noida-db --version` already
#             names the fix (a few minutes cold); replaces an unfixed noida-db
#
# The fix (scripts/noida-db/aborted-transactions.patch): a fetch reports only the aborted
# transactions whose abort marker is at or past its fetch offset, as Kafka does. Unfixed, every
# fetch lists every aborted transaction of the partition; a transactional producer keeps its
# producer id across restarts, so once a killed job's transaction was aborted, a read_committed
# consumer discards all the restarted job's committed output read in later fetches.
set -euo pipefail

VERSION=0.2.3
FIXED="$VERSION+vigil.1"
PATCH="$(cd "$(dirname "$0")" && pwd)/noida-db/aborted-transactions.patch"
export PATH="$PATH:$HOME/.cargo/bin"

die() { echo "noida-db.sh: $*" >&2; exit 1; }

installed() { noida-db --version 2>/dev/null | grep -qF "noida-db $FIXED"; }

install() {
  if installed; then echo "noida-db $FIXED is installed: $(command -v noida-db)"; return; fi
  local work registry
  work=$(mktemp -d)
  trap "rm -rf '$work'" EXIT
  # cargo downloads (and checksums) the published crate for a throwaway package that needs it.
  mkdir -p "$work/fetch/src"
  touch "$work/fetch/src/lib.rs"
  printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\nnoida-db = { version = "=%s", default-features = false }\n' \
    "$VERSION" >"$work/fetch/Cargo.toml"
  cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml"
  registry=${CARGO_HOME:-$HOME/.cargo}/registry/cache
  local crate
  crate=$(find "$registry" -name "noida-db-$VERSION.crate" | head -n 1)
  [[ -n $crate ]] || die "cargo fetch did not download noida-db $VERSION"
  tar -xzf "$crate" -C "$work"
  (cd "$work/noida-db-$VERSION" && git apply "$PATCH")
  cargo install --path "$work/noida-db-$VERSION" --locked --force --no-default-features --features kafka
  installed || die "noida-db installed, but \`noida-db --version\` does not name $FIXED"
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
