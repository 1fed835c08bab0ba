"""A minimal HTTP/3 client on aioquic's API.

    python3 h3_client_b.py HOST PORT CA_PEM KEYLOG QLOG_DIR RESULT.json PATH...

One QUIC connection; the first path alone, the rest at once (like
http_client_b.py, so the TCP + TLS + HTTP/2 capture makes the same requests).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.logger import QuicFileLogger


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._pending: dict[int, tuple[asyncio.Future, dict]] = {}

    async def get(self, authority: str, path: str) -> dict:
        stream_id = self._quic.get_next_available_stream_id()
        start = time.time()
        self._http.send_headers(stream_id, [
            (b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode()),
            (b":path", path.encode()), (b"user-agent", b"traceviz-recorder-h3")], end_stream=True)
        waiter = asyncio.get_running_loop().create_future()
        row = dict(path=path, stream_id=stream_id, start=round(start, 6), status=None, bytes=0)
        self._pending[stream_id] = (waiter, row)
        self.transmit()
        await asyncio.wait_for(waiter, 30)
        row["end"] = round(time.time(), 6)
        return row

    def quic_event_received(self, event) -> None:
        for ev in self._http.handle_event(event):
            if ev.stream_id not in self._pending:
                continue
            waiter, row = self._pending[ev.stream_id]
            if isinstance(ev, HeadersReceived):
                row["status"] = int(dict(ev.headers).get(b":status", b"0"))
            elif isinstance(ev, DataReceived):
                row["bytes"] += len(ev.data)
            if getattr(ev, "stream_ended", False) and not waiter.done():
                waiter.set_result(True)


async def main(host, port, ca, keylog, qlog_dir, result, *paths) -> None:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, cafile=ca,
                               server_name=host, secrets_log_file=open(keylog, "a", buffering=1),
                               quic_logger=QuicFileLogger(qlog_dir))
    authority = f"{host}:{port}"
    async with connect(host, int(port), configuration=config, create_protocol=H3Client) as client:
        rows = [await client.get(authority, paths[0])]
        rows += await asyncio.gather(*(client.get(authority, p) for p in paths[1:]))
        cid = client._quic.host_cid.hex()
        local = client._transport.get_extra_info("sockname")
        for r in rows:
            # the socket is dual-stack and unbound ("::"): only the port is ours to report
            r.update(protocol="h3", client_port=local[1], connection=cid)
    json.dump(rows, open(result, "w"), indent=1)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7], *sys.argv[7:]))
