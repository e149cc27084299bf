#!/usr/bin/env python3
"""The demo's TLS login path, checked as a phone on the LAN would take it (demo.sh --lan --check).

Usage: demo-tls-check.py ADDRESS PORT CERTIFICATE

Connects to the demo's Prosody at ADDRESS:PORT and checks, in order: the server requires
STARTTLS and offers no plain-text login before it; its certificate is the demo's own (trusted
alone) and names ADDRESS; alice logs in with SASL PLAIN over TLS and binds a resource; the
gateway's domain gw.localhost answers disco#info through that session. Exits 0 when all hold,
else 1 with the step that failed.
"""

import base64
import re
import socket
import ssl
import sys

STREAM = (
    "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)


def fail(step, detail=""):
    print(f"TLS login check failed: {step} {detail}".rstrip(), file=sys.stderr)
    sys.exit(1)


def read_until(sock, pattern, step):
    """Reads from `sock` until `pattern` (a regex) matches what came; returns all of it."""
    data = b""
    while not re.search(pattern, data.decode("utf-8", "replace"), re.S):
        try:
            chunk = sock.recv(65536)
        except (OSError, ssl.SSLError) as error:
            fail(step, f"({error})")
        if not chunk:
            fail(step, f"(the server closed the stream after: {data[-300:]!r})")
        data += chunk
        if len(data) > 1 << 20:
            fail(step, "(too much data)")
    return data.decode("utf-8", "replace")


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    address, port, certificate = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    try:
        plain = socket.create_connection((address, port), timeout=10)
    except OSError as error:
        fail("connecting", f"to {address}:{port} ({error})")
    plain.sendall(STREAM.encode())
    features = read_until(plain, r"</stream:features>", "reading the first stream features")
    starttls = re.search(r"<starttls[^>]*>(.*?)</starttls>", features, re.S)
    if not starttls or "<required" not in starttls.group(1):
        fail("STARTTLS is not required", features)
    if "<mechanism>PLAIN</mechanism>" in features:
        fail("plain-text login is offered before TLS", features)
    plain.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    read_until(plain, r"<proceed", "waiting for <proceed/>")

    context = ssl.create_default_context(cafile=certificate)
    try:
        tls = context.wrap_socket(plain, server_hostname=address)
    except (ssl.SSLError, ssl.CertificateError, OSError) as error:
        fail("the TLS handshake or the certificate", f"({error})")
    tls.sendall(STREAM.encode())
    features = read_until(tls, r"</stream:features>", "reading the stream features over TLS")
    if "<mechanism>PLAIN</mechanism>" not in features:
        fail("no PLAIN login over TLS", features)
    credentials = base64.b64encode(b"\0alice\0alice").decode()
    tls.sendall(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>".encode()
    )
    answer = read_until(tls, r"<success|<failure.*?</failure>", "logging in")
    if "<success" not in answer:
        fail("alice's login was refused", answer)
    tls.sendall(STREAM.encode())
    read_until(tls, r"</stream:features>", "reading the stream features after login")
    tls.sendall(
        b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>tls-check</resource></bind></iq>"
    )
    read_until(tls, r"<iq[^>]*id=['\"]bind['\"].*?</iq>", "binding a resource")
    tls.sendall(
        b"<iq type='get' id='disco' to='gw.localhost'>"
        b"<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    answer = read_until(tls, r"<iq[^>]*id=['\"]disco['\"].*?(</iq>|/>)", "asking the gateway")
    if "type='result'" not in answer and 'type="result"' not in answer:
        fail("gw.localhost did not answer disco#info", answer)
    tls.sendall(b"</stream:stream>")
    tls.close()
    print(f"TLS login check: OK (STARTTLS required, the demo's certificate names {address}, "
          "alice logged in, the gateway answered)")


if __name__ == "__main__":
    main()
