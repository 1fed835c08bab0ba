"""What could each proxy read of the traffic it carried: a CONNECT tunnel, layer 4, or layer 7?

A proxy that works at *layer 4* copies bytes between two TCP connections:
the client's TLS goes through untouched and ends at the server, so the
proxy knows the addresses, the TLS SNI and the byte counts -- the two legs
carry the same number of bytes -- and nothing else.  A forward proxy's
*CONNECT tunnel* is the same after one plain-HTTP exchange (``CONNECT
host:443`` answered ``200 Connection established``).  A proxy at *layer 7*
ends the client's TLS itself, reads every request, and sends its own
requests upstream (often plain HTTP, with ``X-Forwarded-For``, on
connections it reuses): it can route by path and rewrite headers.  One row
per client connection through a proxy: how it was proxied, the upstream
connection(s), where TLS ended, what the proxy could read, and the bytes
on each leg.

    python recipes/layers.py capture.pcapng [--chart layers.html]
"""

from __future__ import annotations

import bisect

import pandas as pd

from traceviz.model import positions
from traceviz.recipe import Finding

NAME = "layers"
NEEDS = "a CONNECT tunnel, two connections carrying the same bytes, or requests a proxy sent on"
FAILS_ON = "a proxy that ended the client's TLS and sent its requests on in plain text"
TABLES = ("connections", "requests", "tls")   # what analyze() and the figures read: load() builds only these
FIGURES = {"legs": "client, proxy, server: which leg was encrypted, where TLS ended"}
EXAMPLE = "l4-vs-l7"
TITLE = "Proxies: CONNECT tunnel, layer 4, layer 7"

JSON_FIELDS = ["conn", "client", "proxy", "mode", "upstream_conns", "upstream_server", "client_tls", "upstream_tls",
               "sni", "tls_ends_at", "proxy_reads", "client_requests", "upstream_requests", "bytes_c2s",
               "bytes_s2c", "upstream_bytes_c2s", "upstream_bytes_s2c", "tunnel_target"]
TABLE_FIELDS = ["conn", "proxy", "mode", "upstream_conns", "client_tls", "upstream_tls", "tls_ends_at",
                "client_requests", "upstream_requests"]
READS = {"CONNECT tunnel": "the CONNECT target, the SNI and byte counts -- not the requests inside",
         "layer 4": "addresses, the SNI and byte counts -- not the requests inside",
         "layer 7": "every request and response: method, path, headers, bodies"}


def applies(tl) -> bool:
    return len(_rows(tl)) > 0


def analyze(tl, conn: int | None = None) -> Finding:
    rows = _rows(tl)
    if conn is not None:
        rows = rows[rows["conn"] == conn].reset_index(drop=True)
    answer = explain(rows)
    plain = rows[[isinstance(c, str) and not isinstance(u, str) and bool(ups)
                  for c, u, ups in zip(rows["client_tls"], rows["upstream_tls"], rows["upstream_conns"])]] \
        if len(rows) else rows
    problems = [f"conn {r.conn}: {r.proxy} ended {r.client_tls} and sent the requests on to {r.upstream_server} "
                f"in plain text" for r in plain.itertuples(index=False)]
    figures = {}
    if len(rows):
        figures["legs"] = lambda theme="light": _chart(rows, theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows,
                   summary={"proxied_connections": int(len(rows)),
                            "modes": {k: int(v) for k, v in rows["mode"].value_counts().items()}},
                   answer=answer, figures=figures, json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS,
                   problems=problems)


def _rows(tl) -> pd.DataFrame:
    # Byte counts on both legs are the evidence: packet captures only (a browser export has none).
    c = tl.connections[(tl.connections["transport"] == "tcp").to_numpy(dtype=bool, na_value=False)
                       & tl.connections["bytes_c2s"].notna().to_numpy() & tl.connections["bytes_s2c"].notna().to_numpy()]
    rq = tl.requests
    tls = tl.tls.set_index("conn") if len(tl.tls) else None
    by_conn = c.set_index("conn")
    relays = _Relays(c)
    requests_of = positions(rq["conn"]) if len(rq) else {}
    kids_of = positions(rq["parent"]) if "parent" in rq.columns and len(rq) else {}
    # Per connection only what tells it apart; a table filtered per connection cost ~1 ms each.
    upstream = _conns_where(rq, rq["leg"].astype("object") == "upstream") if "leg" in rq.columns else set()
    tunnels = _conns_where(rq, (rq["method"].astype("object") == "CONNECT") & (rq["status"] // 100 == 2))
    parents = {int(c) for c, r in zip(rq["conn"].tolist(), rq["request"].tolist())
               if int(r) in kids_of and c is not pd.NA and c == c} if kids_of else set()
    out, used = [], set()
    for k in c["conn"].tolist():
        if k in upstream:
            continue
        mine = rq.iloc[requests_of[k]] if k in tunnels or k in parents else None
        row = ((_tunnel(by_conn, relays, k, mine, used) if k in tunnels else None)
               or (_layer7(by_conn, rq, kids_of, k, mine) if k in parents else None)
               or _layer4(relays, k, used))
        if row is None:
            continue
        mine = rq.iloc[requests_of.get(k, [])]
        ups = row["upstream_conns"]
        used.update(ups)
        row.update(_tls_facts(tls, k, ups))
        row.update({"conn": int(k), "client": by_conn.loc[k, "client"], "proxy": by_conn.loc[k, "server"],
                    "bytes_c2s": int(by_conn.loc[k, "bytes_c2s"]), "bytes_s2c": int(by_conn.loc[k, "bytes_s2c"]),
                    "upstream_bytes_c2s": int(by_conn.loc[ups, "bytes_c2s"].sum()),
                    "upstream_bytes_s2c": int(by_conn.loc[ups, "bytes_s2c"].sum()),
                    "upstream_server": ", ".join(sorted(set(by_conn.loc[ups, "server"]))),
                    "client_requests": int((mine["method"].astype("object") != "CONNECT").sum()),
                    "upstream_requests": int(rq["conn"].isin(ups).sum()),
                    "proxy_reads": READS[row["mode"]]})
        out.append(row)
    return pd.DataFrame(out, columns=JSON_FIELDS)


def _conns_where(rq: pd.DataFrame, mask: pd.Series) -> set[int]:
    """The connections of the requests ``mask`` picks."""
    picked = rq.loc[mask.to_numpy(dtype=bool, na_value=False), "conn"].dropna()
    return {int(v) for v in picked.tolist()}


class _Relays:
    """The connections by the bytes they carried each way, in the order they started: the
    candidates for the other leg of a relay, found without a pass over every connection for
    each one (that was quadratic: minutes on a few thousand connections)."""

    def __init__(self, c: pd.DataFrame):
        self.legs: dict[tuple[int, int], tuple[list, list]] = {}
        names = ("conn", "start", "end", "client", "bytes_c2s", "bytes_s2c")
        columns = [c[n].astype("int64") if n.startswith("bytes") else c[n] for n in names]
        self.facts = {r[0]: dict(zip(names, r)) for r in zip(*(col.tolist() for col in columns))}
        rows = [(pos, f["conn"], f["start"], f["client"], f["bytes_c2s"], f["bytes_s2c"])
                for pos, f in enumerate(self.facts.values())]
        for pos, conn, start, client, up, down in sorted((r for r in rows if r[2] == r[2]), key=lambda r: r[2]):
            starts, who = self.legs.setdefault((up, down), ([], []))
            starts.append(start)
            who.append((pos, conn, client))

    def first(self, up: int, down: int, since: float, until: float, skip) -> int | None:
        """The connection, first in the table, carrying ``up``/``down`` bytes that started in
        [``since``, ``until``] and that ``skip(conn, client)`` does not rule out."""
        if not (since <= until):        # an unknown start or end (NaN) bounds no window
            return None
        starts, who = self.legs.get((up, down), ((), ()))
        lo, hi = bisect.bisect_left(starts, since), bisect.bisect_right(starts, until)
        found = [(pos, conn) for pos, conn, client in who[lo:hi] if not skip(conn, client)]
        return min(found)[1] if found else None


def _tunnel(by_conn, relays: _Relays, k, mine, used):
    """A CONNECT answered 2xx: the upstream connection carries what followed, byte for byte."""
    cn = mine[(mine["method"].astype("object") == "CONNECT").to_numpy(dtype=bool, na_value=False)
              & (mine["status"] // 100 == 2).to_numpy(dtype=bool, na_value=False)]
    if not len(cn):
        return None
    r = cn.iloc[0]
    inside_c2s = int(by_conn.loc[k, "bytes_c2s"]) - int(r["req_bytes"] or 0)
    inside_s2c = int(by_conn.loc[k, "bytes_s2c"]) - int(r["resp_bytes"] or 0)
    u = relays.first(inside_c2s, inside_s2c, r["start"], r["start"] + (r["ttfb"] or 0),
                     lambda conn, _: conn == k or conn in used)
    return {"mode": "CONNECT tunnel", "upstream_conns": [int(u)] if u is not None else [], "tunnel_target": r["url"]}


def _layer4(relays: _Relays, k, used):
    """Another connection, opened while this one was, carrying exactly as many bytes each way: relayed."""
    me = relays.facts[k]
    if not me["bytes_c2s"]:
        return None
    u = relays.first(me["bytes_c2s"], me["bytes_s2c"], me["start"], me["end"],
                     lambda conn, client: conn == k or conn in used or client == me["client"])
    return {"mode": "layer 4", "upstream_conns": [int(u)], "tunnel_target": None} if u is not None else None


def _layer7(by_conn, rq, kids_of: dict, k, mine):
    """Requests of this connection that a proxy sent again on its own connections (``parent``)."""
    if "parent" not in rq.columns or not len(mine):
        return None
    kids = rq.iloc[sorted(i for r in mine["request"].tolist() for i in kids_of.get(int(r), ()))]
    if not len(kids):
        return None
    ups = sorted({int(x) for x in kids["conn"].dropna()})
    # Layer 4 relays the TLS session, so a decrypted capture shows the same requests on both legs:
    # equal byte counts say the proxy only copied them.
    if len(ups) == 1 and all(int(by_conn.loc[ups[0], col]) == int(by_conn.loc[k, col])
                             for col in ("bytes_c2s", "bytes_s2c")):
        return None
    return {"mode": "layer 7", "upstream_conns": ups, "tunnel_target": None}


def _tls_facts(tls, k, ups) -> dict:
    def one(conn):
        if tls is None or conn not in tls.index:
            return None, None
        t = tls.loc[conn]
        return t["version"], t["sni"]
    c_ver, sni = one(k)
    u = [one(x) for x in ups]
    u_ver = next((v for v, _ in u if isinstance(v, str)), None)
    if isinstance(c_ver, str) and isinstance(u_ver, str) and len(ups) == 1:
        ends = "the server (end to end: the proxy relays the TLS bytes)"
    elif isinstance(c_ver, str):
        ends = "the proxy" + ("" if isinstance(u_ver, str) else " (plain HTTP upstream)")
    else:
        ends = "nowhere: no TLS" if not isinstance(u_ver, str) else "the server"
    return {"client_tls": c_ver, "upstream_tls": u_ver, "sni": sni if isinstance(sni, str) else
            next((s for _, s in u if isinstance(s, str)), None), "tls_ends_at": ends}


def explain(rows: pd.DataFrame) -> list[str]:
    if not len(rows):
        return ["No proxied connection here: no CONNECT, no pair of legs carrying the same bytes, no request "
                "sent on by a proxy."]
    out = []
    for r in rows.itertuples(index=False):
        head = f"conn {r.conn} ({r.client} \u2192 {r.proxy}), {r.mode}"
        if r.tunnel_target:
            head += f" to {r.tunnel_target} (200 Connection established)"
        if r.upstream_conns:
            head += f"; upstream: conn {', '.join(map(str, r.upstream_conns))} to {r.upstream_server}"
        else:
            head += "; its upstream leg is not in this capture"
        out.append(head + ".")
        tls = f"TLS ({r.client_tls or r.upstream_tls}, SNI {r.sni})" if (r.client_tls or r.upstream_tls) else "no TLS"
        out.append(f"  {tls} ended at {r.tls_ends_at}; the proxy could read {r.proxy_reads}.")
        if r.mode == "layer 7":
            out.append(f"  {r.client_requests} request(s) in, {r.upstream_requests} sent upstream by the proxy on "
                       f"its own connection(s); bytes client leg {r.bytes_c2s}/{r.bytes_s2c}, upstream leg "
                       f"{r.upstream_bytes_c2s}/{r.upstream_bytes_s2c} (up/down): the proxy re-wrote the traffic.")
        elif r.upstream_conns:
            extra = " after the CONNECT exchange" if r.mode == "CONNECT tunnel" else ""
            out.append(f"  Bytes client leg {r.bytes_c2s}/{r.bytes_s2c}, upstream leg {r.upstream_bytes_c2s}/"
                       f"{r.upstream_bytes_s2c} (up/down): the same bytes{extra}, copied.")
    return out


def _chart(rows, theme):
    from traceviz.charts.layers import legs_chart
    return legs_chart(rows, theme=theme)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
