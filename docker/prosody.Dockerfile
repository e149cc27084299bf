# Prosody for docker/compose.yaml: Debian's package, the config in docker/prosody.cfg.lua, and
# the gateway's component from config/prosody (the file you add to your own Prosody).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends prosody lua-unbound \
    && rm -rf /var/lib/apt/lists/*
COPY docker/prosody.cfg.lua /etc/prosody/prosody.cfg.lua
COPY config/prosody/jingle-gateway.cfg.lua /etc/prosody/conf.d/jingle-gateway.cfg.lua
COPY docker/prosody-start.sh /usr/local/bin/prosody-start
USER prosody
EXPOSE 5222/tcp 5280/tcp
CMD ["/usr/local/bin/prosody-start"]
