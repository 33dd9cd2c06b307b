"""The WebSocket upgrade over an established (TLS) socket, with Basic auth, for the stdlib-only
interop scripts. Returns the HTTP status of the answer."""
import base64


def upgrade(tls, host, port, identity, key):
    auth = base64.b64encode(f"{identity}:{key}".encode()).decode()
    request = (
        f"GET /ocpp/{identity} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
        f"Authorization: Basic {auth}\r\n\r\n"
    )
    tls.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = tls.recv(4096)
        if not chunk:
            raise RuntimeError(f"closed before the answer: {head!r}")
        head += chunk
    return int(head.split(b" ", 2)[1])
