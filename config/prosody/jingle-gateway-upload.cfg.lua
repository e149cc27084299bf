-- HTTP upload (XEP-0363) for voicemail recordings, with mod_http_file_share (Prosody 0.12+).
--
-- Install it like jingle-gateway.cfg.lua. Skip it if the server has an upload component
-- already: the gateway finds that one by service discovery. The gateway uploads as its own
-- domain, which every host of this server may do while http_file_share_access is unset; if
-- you set it (here or on your own upload component), list the gateway's domain too.
-- Clients fetch the files from Prosody's HTTPS port: see https://prosody.im/doc/http.
Component "upload.localhost" "http_file_share"
    -- http_file_share_access = { "localhost", "gw.localhost" }
