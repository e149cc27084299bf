-- jingle-gateway: the component the gateway attaches to.
--
-- Copy this file into Prosody's conf.d (Debian: /etc/prosody/conf.d/, which prosody.cfg.lua
-- includes), or add `Include "/path/to/jingle-gateway.cfg.lua"` at the end of prosody.cfg.lua.
-- An included file starts in the global section, so the two port settings below are global.
-- Change gw.localhost and the secret to the gateway's xmpp.domain and xmpp.secret.

-- The component listener. The link is not encrypted: keep it on loopback.
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

Component "gw.localhost"
    component_secret = "secret"
