#!/bin/sh
# Creates the demo accounts alice/alice and bob/bob (once), then runs Prosody in the foreground.
set -e
for user in alice bob; do
  prosodyctl --config /etc/prosody/prosody.cfg.lua register "$user" localhost "$user" 2>/dev/null || true
done
exec prosody -F --config /etc/prosody/prosody.cfg.lua
