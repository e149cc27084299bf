#!/usr/bin/env bash
# Runs the gateway with its built-in example config beside a private Prosody on loopback:
# installs Prosody if it is missing, creates the accounts alice and bob (passwords = names),
# starts Prosody from a temporary directory, builds and runs the gateway, and prints how to call
# echo@gw.localhost. Ctrl-C stops both.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
demo="${JINGLE_DEMO_DIR:-${TMPDIR:-/tmp}/jingle-gateway-demo}"

if ! command -v prosody >/dev/null; then
  echo "Installing Prosody (needs root)..."
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  # Keep the package from starting a system Prosody (it would hold the ports).
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prosody cmake make pkg-config gcc >/dev/null
  if [ "$made_policy" = 1 ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
fi
for port in 5222 5280 5347; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "Port $port is in use (a system Prosody or ejabberd?). Stop it first." >&2
    exit 1
  fi
done

mkdir -p "$demo/localhost/accounts"
for user in alice bob; do
  printf 'return {\n\t["password"] = "%s";\n};\n' "$user" > "$demo/localhost/accounts/$user.dat"
done
cat > "$demo/prosody.cfg.lua" <<LUA
run_as_root = true
data_path = "$demo"
pidfile = "$demo/prosody.pid"
certificates = "$demo"
log = { { levels = { min = "info" }, to = "file", filename = "$demo/prosody.log" } }
interfaces = { "127.0.0.1" }
c2s_ports = { 5222 }
c2s_direct_tls_ports = {}
s2s_ports = {}
http_ports = { 5280 }
http_interfaces = { "127.0.0.1" }
https_ports = {}
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "websocket"; "http" }
modules_disabled = { "s2s"; "dialback"; "tls" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
consider_websocket_secure = true
authentication = "internal_plain"
storage = "internal"

VirtualHost "localhost"

-- The gateway: the same file you add to your own Prosody.
Include "$here/config/prosody/jingle-gateway.cfg.lua"
LUA

echo "Building the gateway..."
cargo build --manifest-path "$here/Cargo.toml" -p jingle-gateway --quiet

prosody -F --config "$demo/prosody.cfg.lua" >"$demo/prosody.out" 2>&1 &
prosody_pid=$!
trap 'kill "$prosody_pid" 2>/dev/null; wait "$prosody_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/5347) 2>/dev/null && break
  sleep 0.1
done

cat <<TEXT

  Prosody runs on loopback (data in $demo). Log in with an XMPP client:
    account   alice@localhost  password alice   (or bob@localhost / bob)
    server    127.0.0.1, port 5222, no TLS (allow plain-text login), or the WebSocket
              ws://127.0.0.1:5280/xmpp-websocket for a browser client
  then call  echo@gw.localhost  (you hear yourself). Add it as a contact to see it online.
  As bob, call voicemail@gw.localhost and leave a message: alice gets it in her chat (served
  from http://127.0.0.1:8088). As alice, call it to listen; ivr@gw.localhost is a menu.

  Ctrl-C stops the gateway and Prosody.

TEXT
GATEWAY_STORAGE_DATA_DIR="$demo/gateway" \
GATEWAY_MEDIA_ALLOW_LOOPBACK_CANDIDATES=true \
  "$here/target/debug/jingle-gateway"
