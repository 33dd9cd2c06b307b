"""The OCPP security whitepaper's static-RSA TLS 1.2 suites, which rustls does not have, through
a balancer that ends TLS (deploy/haproxy-tls-offload.cfg), with Python's ssl module (OpenSSL).

For each suite: connect offering only it, upgrade to WebSocket as the given identity with its
Basic-auth key. Prints one JSON line per suite: {"cipher": ..., "version": ..., "status": 101}.

    python3 tls_offload_rsa.py HOST PORT CA_PEM IDENTITY KEY
"""
import json
import socket
import ssl
import sys

from ws_upgrade import upgrade

SUITES = ("AES128-GCM-SHA256", "AES256-GCM-SHA384")


def main():
    host, port, ca, identity, key = sys.argv[1:6]
    port = int(port)
    for suite in SUITES:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(suite)
        with socket.create_connection((host, port), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                status = upgrade(tls, host, port, identity, key)
                print(json.dumps({
                    "cipher": tls.cipher()[0],
                    "version": tls.version(),
                    "status": status,
                }), flush=True)


if __name__ == "__main__":
    main()
