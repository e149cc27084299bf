#!/usr/bin/env bash
# Installs what the build and the test suite need on a Debian machine: cmake (libopus is built
# from source), pkg-config and libasound2-dev (the `sound` feature, on by default), and Prosody and ejabberd (the integration tests start private
# instances of both on loopback), coturn (STUN/TURN for the relay tests), systemd
# (`systemd-analyze verify` checks the unit file) and util-linux (`unshare` gives the full-disk
# test a tmpfs of its own). Their system services are not started.
# Needs root (or sudo) only when something is missing.
set -euo pipefail
packages=(cmake make pkg-config gcc libasound2-dev prosody ejabberd coturn systemd util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep package scripts from starting system services: the tests run their own servers.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
# If a system instance runs anyway, stop it: it would hold ports and logs we do not want.
for service in prosody ejabberd coturn; do
  if pgrep -u "$service" >/dev/null 2>&1; then
    systemctl stop "$service" 2>/dev/null || service "$service" stop 2>/dev/null || true
  fi
done
command -v cargo >/dev/null || { echo "cargo is needed: https://rustup.rs" >&2; exit 1; }
