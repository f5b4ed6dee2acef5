#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine too: installs what the tests need
# (a C compiler for SQLite, the rqlite client library pyrqlite, Debian's iso-codes files
# for the import test, Chromium and ChromeDriver for the web console's browser test,
# iproute2 for the network-namespace deployment test), then runs
# `cargo test --workspace --locked` with any extra
# arguments given, e.g. `scripts/test.sh -p cairn --test behaviour`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required: https://rustup.rs" >&2
  exit 1
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "need root (or sudo) to run: $*" >&2; return 1
  fi
}

apt_packages=()
command -v cc >/dev/null 2>&1 || apt_packages+=(build-essential)
[ -d /usr/share/iso-codes/json ] || apt_packages+=(iso-codes)
[ -x /usr/bin/chromium ] || apt_packages+=(chromium)
[ -x /usr/bin/chromedriver ] || apt_packages+=(chromium-driver)
command -v ip >/dev/null 2>&1 || apt_packages+=(iproute2)
python3 -c 'import pyrqlite' >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1 || apt_packages+=(python3-pip)
if [ ${#apt_packages[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}"
fi
if ! python3 -c 'import pyrqlite' >/dev/null 2>&1; then
  python3 -m pip install --quiet pyrqlite 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages pyrqlite
fi

cargo --version
cargo test --workspace --locked "$@"
