"""httpx client for the HTTP/2, HTTP/1.1 and h2c captures (scenarios 4 and 5).

    python3 http_client_b.py MODE BASE_URL CA_PEM KEYLOG RESULT.json PATH...

MODE: ``h2`` (TLS, ALPN h2), ``h1`` (TLS, HTTP/1.1, at most 6 connections),
``h2c`` (cleartext HTTP/2 with prior knowledge).  The first path is fetched
alone (like a page), the rest all at once.  Writes one row per request: the
client side's ground truth (status, HTTP version, stream id, local address).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time

import httpx


def client_options(mode: str, ca: str, keylog: str) -> dict:
    if mode not in ("h2", "h1", "h2c"):
        raise ValueError(f"unknown mode {mode!r}")
    opts: dict = dict(limits=httpx.Limits(max_connections=6 if mode == "h1" else 1))
    if mode == "h2c":
        opts.update(http1=False, http2=True)
        return opts
    ctx = ssl.create_default_context(cafile=ca)
    ctx.keylog_filename = keylog
    opts.update(verify=ctx, http2=(mode == "h2"), http1=True)
    return opts


async def fetch(client: httpx.AsyncClient, url: str) -> dict:
    start = time.time()
    r = await client.get(url)
    body = r.content
    stream = r.extensions.get("network_stream")
    local = stream.get_extra_info("client_addr") if stream is not None else None
    return dict(url=url, path=httpx.URL(url).path, status=r.status_code, http_version=r.http_version,
                stream_id=r.extensions.get("stream_id"),
                client=f"{local[0]}:{local[1]}" if local else None,
                start=round(start, 6), end=round(time.time(), 6), bytes=len(body))


async def main(mode: str, base: str, ca: str, keylog: str, result: str, paths: list[str]) -> None:
    async with httpx.AsyncClient(**client_options(mode, ca, keylog), timeout=30) as client:
        rows = [await fetch(client, base + paths[0])]
        rows += await asyncio.gather(*(fetch(client, base + p) for p in paths[1:]))
    json.dump(rows, open(result, "w"), indent=1)


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], a[1], a[2], a[3], a[4], a[5:]))
