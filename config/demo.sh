#!/usr/bin/env bash
# Runs the gateway with its built-in example config beside a private Prosody on loopback:
# installs what is missing (config/packages.txt: Prosody and the build's packages), creates the
# accounts alice and bob (passwords = names), starts Prosody from a temporary directory, builds
# and runs the gateway, and prints how to call echo@gw.localhost. Ctrl-C stops both.
#
#   bash config/demo.sh           the demo, until Ctrl-C
#   bash config/demo.sh --check   the same, then one echo call by the project's test caller as
#                                 alice; stops everything and exits 0 if alice heard herself
#   bash config/demo.sh --lan     to call from a phone: Prosody also serves clients on this
#                                 machine's LAN address, with TLS (a self-signed certificate,
#                                 made here) required, the media on that address; prints what
#                                 to type into Conversations or Dino, and a QR code if qrencode
#                                 is installed. JINGLE_DEMO_LAN_ADDRESS picks the address.
#   bash config/demo.sh --lan --check
#                                 the LAN setup, then the TLS login path checked as a phone
#                                 takes it (config/demo-tls-check.py), then stops
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
demo="${JINGLE_DEMO_DIR:-${TMPDIR:-/tmp}/jingle-gateway-demo}"
check=0
lan=""
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    --lan) lan="${JINGLE_DEMO_LAN_ADDRESS:-$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n1)}"
      if [ -z "$lan" ]; then
        echo "--lan: this machine has no LAN address; set JINGLE_DEMO_LAN_ADDRESS" >&2
        exit 2
      fi ;;
    *) echo "usage: $0 [--check] [--lan]" >&2; exit 2 ;;
  esac
done

bash "$here/config/install-packages.sh" build demo
for port in 5222 5280 5347; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "Port $port is in use (a system Prosody or ejabberd?). Stop it first." >&2
    exit 1
  fi
done

mkdir -p "$demo/localhost/accounts"
# Plain text on loopback; with --lan, TLS is required on every c2s connection.
interfaces='"127.0.0.1"'
tls_module=""
tls_settings='modules_disabled = { "s2s"; "dialback"; "tls" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true'
if [ -n "$lan" ]; then
  command -v openssl >/dev/null || { echo "--lan needs openssl (apt-get install openssl)" >&2; exit 1; }
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:$lan" \
    -keyout "$demo/localhost.key" -out "$demo/localhost.crt" 2>/dev/null
  chmod 600 "$demo/localhost.key"
  [ "$lan" != 127.0.0.1 ] && interfaces="\"127.0.0.1\"; \"$lan\""
  tls_module='; "tls"'
  tls_settings="modules_disabled = { \"s2s\"; \"dialback\" }
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
ssl = { certificate = \"$demo/localhost.crt\"; key = \"$demo/localhost.key\" }"
fi
for user in alice bob; do
  printf 'return {\n\t["password"] = "%s";\n};\n' "$user" > "$demo/localhost/accounts/$user.dat"
done
cat > "$demo/prosody.cfg.lua" <<LUA
run_as_root = true
data_path = "$demo"
pidfile = "$demo/prosody.pid"
certificates = "$demo"
log = { { levels = { min = "info" }, to = "file", filename = "$demo/prosody.log" } }
interfaces = { $interfaces }
c2s_ports = { 5222 }
c2s_direct_tls_ports = {}
s2s_ports = {}
http_ports = { 5280 }
http_interfaces = { "127.0.0.1" }
https_ports = {}
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "websocket"; "http"$tls_module }
$tls_settings
consider_websocket_secure = true
authentication = "internal_plain"
storage = "internal"

VirtualHost "localhost"

-- The gateway: the same file you add to your own Prosody.
Include "$here/config/prosody/jingle-gateway.cfg.lua"
LUA

echo "Building the gateway..."
cargo build --manifest-path "$here/Cargo.toml" -p jingle-gateway --quiet
if [ "$check" = 1 ] && [ -z "$lan" ]; then
  echo "Building the test caller..."
  cargo test --manifest-path "$here/Cargo.toml" -p jingle-gateway --test integration --no-run --quiet
fi

prosody -F --config "$demo/prosody.cfg.lua" >"$demo/prosody.out" 2>&1 &
prosody_pid=$!
gateway_pid=""
stop_all() {
  if [ -n "$gateway_pid" ]; then
    kill "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
  fi
  kill "$prosody_pid" 2>/dev/null || true
  wait "$prosody_pid" 2>/dev/null || true
}
trap stop_all EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/5347) 2>/dev/null && break
  sleep 0.1
done
if ! (exec 3<>/dev/tcp/127.0.0.1/5347) 2>/dev/null; then
  echo "Prosody did not start: see $demo/prosody.out and $demo/prosody.log" >&2
  exit 1
fi

gateway=(env GATEWAY_STORAGE_DATA_DIR="$demo/gateway" GATEWAY_MEDIA_ALLOW_LOOPBACK_CANDIDATES=true)
if [ -n "$lan" ]; then
  # Phones on the LAN offer private addresses; the media goes out on the LAN address.
  gateway+=(GATEWAY_MEDIA_LOCAL_ADDRESS="$lan" GATEWAY_MEDIA_ALLOW_PRIVATE_CANDIDATES=true)
fi
gateway+=("$here/target/debug/jingle-gateway")

if [ "$check" = 1 ] && [ -n "$lan" ]; then
  "${gateway[@]}" >"$demo/gateway.log" 2>&1 &
  gateway_pid=$!
  command -v python3 >/dev/null || { echo "--lan --check needs python3" >&2; exit 1; }
  for _ in $(seq 100); do
    grep -q "component connected" "$demo/gateway.log" 2>/dev/null && break
    sleep 0.1
  done
  if python3 "$here/config/demo-tls-check.py" "$lan" 5222 "$demo/localhost.crt"; then
    exit 0
  fi
  echo "Prosody's log: $demo/prosody.log, the gateway's: $demo/gateway.log" >&2
  exit 1
fi

if [ "$check" = 1 ]; then
  "${gateway[@]}" >"$demo/gateway.log" 2>&1 &
  gateway_pid=$!
  echo "Calling echo@gw.localhost as alice..."
  if JINGLE_DEMO_C2S_PORT=5222 timeout 120 cargo test --manifest-path "$here/Cargo.toml" \
      -p jingle-gateway --test integration --quiet -- --ignored --exact \
      demo::the_demo_answers_an_echo_call >"$demo/check.log" 2>&1; then
    echo "demo check: OK (alice called echo@gw.localhost and heard herself)"
    exit 0
  fi
  echo "demo check FAILED: the call's output is in $demo/check.log, the gateway's log in" >&2
  echo "$demo/gateway.log, Prosody's in $demo/prosody.log; the last lines:" >&2
  tail -n 15 "$demo/check.log" >&2
  exit 1
fi

if [ -n "$lan" ]; then
  fingerprint=$(openssl x509 -noout -fingerprint -sha256 -in "$demo/localhost.crt" | cut -d= -f2)
  cat <<TEXT

  Prosody serves clients on $lan (TLS required, a self-signed certificate). On a phone or
  laptop on the same network, in Conversations (or Dino, Gajim, Monal):
    add an account  alice@localhost  password alice   (or bob@localhost / bob)
    server          $lan, port 5222 (Conversations: "Change host and port" in the account's
                    advanced settings; Dino and Gajim: the account's server/proxy settings)
    certificate     accept it when asked; its SHA-256 fingerprint is
                    $fingerprint
  then call  echo@gw.localhost  (you hear yourself), voicemail@gw.localhost, ivr@gw.localhost.
  Open this machine's firewall for TCP 5222 and UDP 10000 (the media) from the LAN.

  Ctrl-C stops the gateway and Prosody.

TEXT
  if command -v qrencode >/dev/null; then
    echo "  Scan to open echo@gw.localhost in your client once the account is added:"
    qrencode -t ANSIUTF8 "xmpp:echo@gw.localhost"
  fi
  "${gateway[@]}"
  exit
fi

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
"${gateway[@]}"
