"""TLS, sans-I/O: record layer, handshake messages, fingerprints, one session's
machine, and (``crypto``) decryption from key logs or an RSA key.

    from traceviz.decode.tls import TLSSession
    s = TLSSession(conn=0)
    s.feed("c2s", data, frame, ts)      # bytes of one direction, in stream order
    s.row()                             # the session's line in timeline.tls

``parse_client_hello`` / ``parse_server_hello`` and the fingerprint functions
work on handshake message bodies alone, so QUIC's CRYPTO frames can use them
too (JA4 with ``transport="q"``).
"""

from traceviz.decode.tls.fingerprints import ja3, ja3s, ja4, ja4s
from traceviz.decode.tls.messages import ClientHello, DecodeError, ServerHello, parse_client_hello, parse_server_hello
from traceviz.decode.tls.session import TLSSession

__all__ = ["TLSSession", "ClientHello", "ServerHello", "DecodeError", "parse_client_hello", "parse_server_hello",
           "ja3", "ja3s", "ja4", "ja4s"]
