"""TLS session resumption with Python's own ssl module (OpenSSL), against a profile 2 gateway.

For TLS 1.3 and then TLS 1.2: connect, upgrade to WebSocket as the given identity with its
Basic-auth key, read the 101 (a TLS 1.3 ticket arrives after the handshake, so the session is
taken only once the answer was read), close; connect again offering that session. Prints one
JSON line per connection: {"version": ..., "attempt": 1|2, "reused": bool, "status": 101}.

    python3 tls_resume.py HOST PORT CA_PEM IDENTITY KEY
"""
import json
import socket
import ssl
import sys

from ws_upgrade import upgrade


def main():
    host, port, ca, identity, key = sys.argv[1:6]
    port = int(port)
    for name, version in (("TLSv1.3", ssl.TLSVersion.TLSv1_3), ("TLSv1.2", ssl.TLSVersion.TLSv1_2)):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.minimum_version = version
        ctx.maximum_version = version
        session = None
        for attempt in (1, 2):
            with socket.create_connection((host, port), timeout=20) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                    status = upgrade(tls, host, port, identity, key)
                    print(json.dumps({
                        "version": tls.version(),
                        "attempt": attempt,
                        "reused": tls.session_reused,
                        "status": status,
                    }), flush=True)
                    session = tls.session


if __name__ == "__main__":
    main()
