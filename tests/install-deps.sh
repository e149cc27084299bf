#!/usr/bin/env bash
# Installs what the build and the test suite need on a Debian machine (the list, with what each
# package is for, is config/packages.txt, shared with config/demo.sh) and checks the Rust
# version. The system services of Prosody, ejabberd and coturn are not started; if one runs
# anyway it is stopped, since the tests run private instances on loopback.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/config/install-packages.sh" build demo test
# cargo-deb builds the Debian package (a test checks what it holds).
if ! cargo deb --version 2>/dev/null | grep -q "3.8.0"; then
  cargo install cargo-deb --locked --version 3.8.0 --quiet
fi
for service in prosody ejabberd coturn; do
  if pgrep -u "$service" >/dev/null 2>&1; then
    systemctl stop "$service" 2>/dev/null || service "$service" stop 2>/dev/null || true
  fi
done
