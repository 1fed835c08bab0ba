"""A minimal HTTP/3 server on aioquic's API (its examples/ are not in the wheel).

    python3 h3_server_b.py HOST PORT CERT KEY SITE_DIR KEYLOG QLOG_DIR LOG.jsonl

Serves files under SITE_DIR; logs every request (connection id, stream id,
path, status) as JSON lines: the server side's ground truth.  Writes its TLS
secrets (NSS key log format) and one qlog per connection into QLOG_DIR.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated
from aioquic.quic.logger import QuicFileLogger

TYPES = {".html": b"text/html", ".txt": b"text/plain"}


def lookup(site: Path, path: str) -> tuple[int, bytes, bytes]:
    """(status, content type, body) for a request path; never leaves ``site``."""
    target = (site / path.split("?", 1)[0].lstrip("/")).resolve()
    if site.resolve() not in target.parents or not target.is_file():
        return 404, b"text/plain", b"not found\n"
    return 200, TYPES.get(target.suffix, b"application/octet-stream"), target.read_bytes()


class H3Server(QuicConnectionProtocol):
    site: Path
    log_file = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http: H3Connection | None = None

    def quic_event_received(self, event) -> None:
        if isinstance(event, ProtocolNegotiated):
            self._http = H3Connection(self._quic)
        if self._http is None:
            return
        for ev in self._http.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self._answer(ev)

    def _answer(self, ev: HeadersReceived) -> None:
        headers = dict(ev.headers)
        path = headers.get(b":path", b"/").decode()
        status, ctype, body = lookup(self.site, path)
        self._http.send_headers(ev.stream_id, [
            (b":status", str(status).encode()), (b"server", b"aioquic-h3-server-b"),
            (b"content-type", ctype), (b"content-length", str(len(body)).encode())])
        self._http.send_data(ev.stream_id, body, end_stream=True)
        self.transmit()
        self.log_file.write(json.dumps(dict(
            t=round(time.time(), 6), cid=self._quic.host_cid.hex(), stream_id=ev.stream_id,
            method=headers.get(b":method", b"").decode(), path=path, status=status,
            bytes=len(body))) + "\n")
        self.log_file.flush()


async def main(host, port, cert, key, site, keylog, qlog_dir, log) -> None:
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN,
                               secrets_log_file=open(keylog, "a", buffering=1),
                               quic_logger=QuicFileLogger(qlog_dir))
    config.load_cert_chain(cert, key)
    H3Server.site = Path(site)
    H3Server.log_file = open(log, "a")
    await serve(host, int(port), configuration=config, create_protocol=H3Server)
    print("ready", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:9]))
