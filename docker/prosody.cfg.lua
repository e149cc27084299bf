-- Prosody for docker/compose.yaml: the virtual host "localhost" with the demo accounts, plain
-- c2s on 5222 and WebSocket on 5280 (no TLS: for trying the gateway, not for production), and
-- the gateway's component from conf.d.
data_path = "/var/lib/prosody"
pidfile = "/var/run/prosody/prosody.pid"
log = { { levels = { min = "info" }, to = "console" } }
interfaces = { "*" }
c2s_ports = { 5222 }
c2s_direct_tls_ports = {}
s2s_ports = {}
http_ports = { 5280 }
http_interfaces = { "*" }
https_ports = {}
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "websocket"; "http" }
modules_disabled = { "s2s"; "dialback"; "tls" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
consider_websocket_secure = true
authentication = "internal_hashed"
storage = "internal"

VirtualHost "localhost"

Include "conf.d/*.cfg.lua"
