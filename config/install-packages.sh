#!/usr/bin/env bash
# Installs the Debian packages config/packages.txt lists for the given uses (build, demo, test),
# those that are missing only, without starting their system services; then checks that Rust
# is new enough for the workspace's rust-version. Needs root (or sudo) only when a package is
# missing.
#
#   bash config/install-packages.sh build demo
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
(($#)) || { echo "usage: $0 build|demo|test ..." >&2; exit 2; }
wanted=()
while read -r package use _; do
  case "$package" in ''|'#'*) continue ;; esac
  for asked in "$@"; do
    [ "$asked" = "$use" ] && wanted+=("$package")
  done
done <"$here/config/packages.txt"
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "root or sudo is needed to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  # Keep package scripts from starting system services: the demo and the tests run their own.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$made_policy" = 1 ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
fi

# Rust: cargo, and at least the workspace's rust-version.
if ! command -v cargo >/dev/null; then
  echo "cargo is needed: install Rust with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi
need=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$here/Cargo.toml")
have=$(rustc --version | awk '{print $2}')
if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  echo "Rust $need or newer is needed, this machine has $have: run 'rustup update stable'" >&2
  exit 1
fi
