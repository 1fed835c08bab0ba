"""The flow graph: one lane per host, every message an arrow between lanes.

Like Wireshark's Statistics -> Flow Graph, but labelled at the highest
layer traceviz decoded for each frame ("HEADERS[1]: GET /", "200 OK",
"ClientHello", "SYN"), so a page load reads as one story from the SYN to the
last DATA frame, and a proxy's two legs read as client -> proxy -> upstream.
Time flows down, one row per message, its time since the first message on
the left and its frame number beside the arrow.

A host that answers on one leg and asks on the other is drawn as one lane:
a request seen leaving a host while that host's own client's request (same
method and path) was open pairs the two addresses as one relay (a reverse
proxy captured on its own two interfaces; the requests table's ``parent``
says so directly where it is known).

``messages`` picks the arrows from the timeline's tables (no bytes are read,
no fact recomputed); ``flowgraph`` draws them.
"""

from __future__ import annotations

import bisect
import re
from typing import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.sequence import Arrow, Batch, Diagram, Lane, Style
from traceviz.charts.text import safe
from traceviz.model import missing

# Higher layers win when a frame carries several: TCP < TLS/QUIC < HTTP.
LAYER_RANK = {"tcp": 0, "udp": 0, "tls": 1, "quic": 1, "http": 2, "h2": 2, "h3": 2, "dns": 2}
FIELDS = ["frame", "ts", "t", "conn", "src", "dst", "src_addr", "dst_addr", "layer", "label", "stream"]
MAX_LABEL = 64


def messages(tl, conn: int | None = None, hosts: Iterable[str] | None = None, since: float | None = None,
             until: float | None = None) -> pd.DataFrame:
    """One row per arrow: frame, ts, t (seconds since the first packet), conn, src/dst
    (lane names), src_addr/dst_addr, layer, label, stream.

    Filters: ``conn``; ``hosts`` (keep arrows touching any of these addresses or lane
    names); ``since``/``until`` (seconds since the first packet).
    """
    pk = tl.packets
    if not len(pk):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in FIELDS})
    t0 = float(pk["ts"].min())
    rows = pd.concat([_event_arrows(tl), _plain_arrows(tl)], ignore_index=True)
    if not len(rows):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in FIELDS})
    ends = pk.set_index("frame")[["src", "dst", "ts"]]
    rows = rows.join(ends, on="frame", how="inner")
    rows = rows[rows["src"].notna() & rows["dst"].notna()]
    alias = relays(tl)
    rows["src_addr"] = rows["src"].astype(str)
    rows["dst_addr"] = rows["dst"].astype(str)
    # A relay's addresses renamed through a dict map (a function called per arrow cost a second
    # on a million packets); most captures have none.
    rows["src"] = _renamed(rows["src_addr"], alias)
    rows["dst"] = _renamed(rows["dst_addr"], alias)
    rows["t"] = rows["ts"] - t0
    if conn is not None:
        rows = rows[rows["conn"] == conn]
    if hosts:
        wanted = set(map(str, hosts))
        touch = rows[["src", "dst", "src_addr", "dst_addr"]].isin(wanted).any(axis=1)
        rows = rows[touch]
    if since is not None:
        rows = rows[rows["t"] >= since]
    if until is not None:
        rows = rows[rows["t"] <= until]
    rows = rows.sort_values(["ts", "frame"], kind="stable").reset_index(drop=True)
    return rows[FIELDS]


def _renamed(addrs: pd.Series, alias: dict[str, str]) -> pd.Series:
    """Each address, or its lane name where ``alias`` has one."""
    if not alias:
        return addrs.copy()
    return addrs.map(alias).fillna(addrs)


def relays(tl) -> dict[str, str]:
    """Address -> lane name for hosts seen on both legs of a relay (see the module doc)."""
    rq = tl.requests
    c = tl.connections
    if not len(rq) or not len(c):
        return {}
    ends = c.set_index("conn")[["client", "server"]]
    r = rq[rq["conn"].notna()].join(ends, on="conn")
    if not len(r):
        return {}
    r = r.assign(path=r["url"].astype("string").str.replace(r"^[a-z]+://[^/]*", "", regex=True),
                 client_host=r["client"].map(_host), server_host=r["server"].map(_host))
    pairs = set()
    if "parent" in r and r["parent"].notna().any():
        by_id = r.set_index("request")
        for child in r[r["parent"].notna()].itertuples():
            if int(child.parent) in by_id.index:
                pairs.add((by_id.loc[int(child.parent), "server_host"], child.client_host))
    else:
        pairs = _sent_on(r)
    alias = {}
    for front, back in sorted(p for p in pairs if p[0] and p[1] and p[0] != p[1]):
        name = f"{front} / {back}"
        alias[front] = alias[back] = name
    return alias


def _sent_on(r: pd.DataFrame) -> set[tuple[str, str]]:
    """(server host, client host) of each request sent again, same method and path, by
    another host while it was open: that host relayed it.  Requests are compared only with
    those of their own method and path, in the order they started: one sort, then a search
    per request (a filter of every request for each was quadratic: tens of seconds on a few
    thousand)."""
    known = (r["method"].notna() & r["path"].notna() & r["start"].notna()).to_numpy(dtype=bool)
    r = r[known].sort_values(["method", "path", "start"], kind="stable")
    keys = list(zip(r["method"].tolist(), r["path"].tolist()))
    starts, ends = r["start"].tolist(), r["end"].fillna(np.inf).tolist()
    clients, servers = r["client_host"].tolist(), r["server_host"].tolist()
    pairs, lo = set(), 0
    for i in range(len(keys) + 1):
        if i < len(keys) and keys[i] == keys[lo]:
            continue
        for j in range(lo, i):            # the requests [lo, i) share a method and path
            first = bisect.bisect_right(starts, starts[j], lo, i)
            last = bisect.bisect_left(starts, ends[j], lo, i)
            pairs.update((servers[j], host) for host in clients[first:last] if host != clients[j] and host != servers[j])
        lo = i
    return pairs


def _host(endpoint) -> str | None:
    if endpoint is None or (isinstance(endpoint, float) and endpoint != endpoint) or endpoint is pd.NA:
        return None
    text = str(endpoint)
    if text.startswith("["):
        return text[1:text.index("]")]
    return text.rsplit(":", 1)[0]


def _event_arrows(tl) -> pd.DataFrame:
    ev = tl.events
    ev = ev[ev["frame"].notna() & ev["layer"].isin(list(LAYER_RANK))]
    if not len(ev):
        return pd.DataFrame(columns=["frame", "conn", "layer", "label", "stream"])
    ev = ev.assign(rank=ev["layer"].map(LAYER_RANK), frame=ev["frame"].astype("int64"))
    top = ev.groupby("frame")["rank"].transform("max")
    ev = ev[ev["rank"] == top]
    ev = ev.assign(text=[_label(k, l, d, s) for k, l, d, s in
                         zip(ev["kind"], ev["layer"], ev["detail"], ev["stream"])])
    # Most frames carry one event: its row is its arrow.  Only frames with several are grouped
    # (a Python label join per group of every frame was most of a big flow graph's time).
    several = ev["frame"].duplicated(keep=False).to_numpy()
    one = ev[~several]
    alone = pd.DataFrame({"frame": one["frame"], "conn": one["conn"], "layer": one["layer"],
                          "stream": one["stream"], "label": [_join([t]) for t in one["text"].tolist()]})
    grouped = _grouped_arrows(ev[several])
    return pd.concat([alone, grouped], ignore_index=True) if len(grouped) else alone.reset_index(drop=True)


def _grouped_arrows(ev: pd.DataFrame) -> pd.DataFrame:
    """One arrow per frame of ``ev`` (frames carrying several events), in the order the frames
    first appear: each column's first known value, the texts joined.  A groupby with a Python
    join per group took a second on 40k frames; this is one pass over plain lists."""
    firsts: dict = {}
    texts: dict = {}
    for frame, *values, text in zip(*(ev[c].tolist() for c in ("frame", "conn", "layer", "stream", "text"))):
        known = firsts.get(frame)
        if known is None:
            firsts[frame] = values
            texts[frame] = [text]
            continue
        texts[frame].append(text)
        for i, v in enumerate(values):          # as groupby's "first": the first value that is not NA
            if missing(known[i]) and not missing(v):
                known[i] = v
    cols = list(zip(*firsts.values())) if firsts else [(), (), ()]
    return pd.DataFrame({"frame": pd.array(list(firsts), dtype=ev["frame"].dtype),
                         **{c: pd.array(list(v), dtype=ev[c].dtype) for c, v in zip(("conn", "layer", "stream"), cols)},
                         "label": [_join(t) for t in texts.values()]})


def _plain_arrows(tl) -> pd.DataFrame:
    """Frames no event names: the handshake's ACK, and segments or datagrams carrying
    bytes no decoder read."""
    pk = tl.packets
    named = set(tl.events["frame"].dropna().astype("int64")) if len(tl.events) else set()
    hs = tl.connections.get("ack_frame")
    acks = set(hs.dropna().astype("int64")) if hs is not None else set()
    carrying = pk[(pk["len"].fillna(0) > 0) & pk["transport"].isin(["tcp", "udp"])]
    carrying = carrying[~carrying["frame"].isin(named).to_numpy(dtype=bool, na_value=False)]
    # Plain lists: iterating the columns themselves cost a microsecond a value (text columns most).
    rows = [(int(f), c, str(tr), f"TCP segment, {int(n)} bytes" if tr == "tcp" else f"UDP, {int(n)} bytes", pd.NA)
            for f, c, tr, n in zip(*(carrying[k].tolist() for k in ("frame", "conn", "transport", "len")))]
    conn_of: dict = {}                                          # a lookup, not a filter per ACK
    for f, c in zip(pk["frame"].tolist(), pk["conn"].tolist()):
        conn_of.setdefault(f, c)
    rows += [(int(f), conn_of[f], "tcp", "ACK", pd.NA) for f in sorted(acks - named) if f in conn_of]
    return pd.DataFrame(rows, columns=["frame", "conn", "layer", "label", "stream"])


def _label(kind, layer, detail, stream) -> str:
    kind = "" if kind is None or kind is pd.NA else str(kind)
    detail = "" if detail is None or detail is pd.NA or (isinstance(detail, float) and detail != detail) else str(detail)
    if layer in ("h2", "h3"):
        sid = "" if stream is None or stream is pd.NA else f"[{int(stream)}]"
        text = f"{kind}{sid}"
        if kind == "HEADERS" and detail:
            text += ": " + detail.replace(" (END_STREAM)", "")
        return text
    if layer == "http" and detail:
        return detail
    return kind


def _join(texts) -> str:
    texts = list(dict.fromkeys(t for t in texts if t))
    label = ", ".join(texts)
    if len(label) > MAX_LABEL:
        kept, n = [], 0
        for t in texts:
            if n + len(t) > MAX_LABEL - 12 and kept:
                break
            kept.append(t)
            n += len(t) + 2
        label = ", ".join(kept) + f" +{len(texts) - len(kept)} more"
    return label


# --- drawing -----------------------------------------------------------------------------

def flowgraph(msgs: pd.DataFrame, theme: str = "light", title: str = "Flow graph", limit: int = 300) -> go.Figure:
    """The flow graph of ``messages(...)``: lanes left to right in order of first appearance.

    Drawn by the sequence-diagram engine (``charts.sequence``) the ladders share:
    time to scale with long silences cut, labels that never collide (HTTP and
    resets first, then TLS/QUIC, then TCP), a long story opening on its first
    messages and scrolling.  Where each message was captured is unknown across
    many hosts, so an arrow is drawn at its capture time, slanted only enough to read.
    """
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    fig.update_layout(width=s["width"], height=s["height"])
    total = len(msgs)
    shown = msgs.head(limit) if limit else msgs
    if not len(shown):
        fig.update_layout(title=dict(text=f"<b>{safe(title)}</b> (no messages)"))
        return fig
    hosts = lane_order(shown)
    x = {h: float(i) for i, h in enumerate(hosts)}
    lanes = [Lane(i, f"<b>{safe(h)}</b>", c["text"]) for h, i in x.items()]
    t0 = float(shown["ts"].iloc[0])
    arrows = [_arrow(m, x, (float(m.ts) - t0) * 1000) for m in shown.itertuples(index=False)]
    styles = {key: Style(text, c[color], s["line"] * (0.8 if key in ("tcp", "data") else 1.0), head=1.4)
              for key, (text, color) in STYLES.items()}
    last = len(hosts) - 1
    d = Diagram(name, lanes, arrows, styles, x_range=(-0.3, max(last, 1) + 0.3),
                axis_title="ms since the first message (long silences cut)")
    batch = Batch(fig)
    d.draw_frame(batch)
    d.draw_arrows(batch)
    d.draw_labels(batch)
    d.draw_hover(batch, "messages")
    batch.flush()
    facts = [f"{len(hosts)} hosts", f"{total} messages" + (f", the first {len(shown)} drawn" if total > len(shown) else ""),
             "frame numbers beside the arrows"]
    marks = [("first HTTP", next((a for a in arrows if a.style == "http"), None)),
             ("first error", next((a for a in arrows if a.style == "error"), None))]
    d.layout(fig, f"<b>{safe(title)}</b>", facts, [(n, a) for n, a in marks if a is not None], last="last message")
    return fig


# Arrow kinds: legend text and colour, and the label's turn to be placed (lowest first).
STYLES = {"http": ("HTTP", "wait"), "error": ("reset or HTTP error", "RST"), "tls": ("TLS / QUIC", "tls"),
          "open": ("TCP open", "SYN"), "close": ("TCP close", "FIN"), "retransmission": ("retransmission", "retransmission"),
          "tcp": ("TCP / UDP bytes", "data")}
RANK = {"http": 0, "error": 0, "tls": 1, "retransmission": 1, "open": 2, "close": 2, "tcp": 3}


def _arrow(m, x: dict, t: float) -> Arrow:
    x0, x1 = x[m.src], x[m.dst]
    if x0 == x1:        # both ends on one lane (a relay's own two addresses): a stub to the right
        x1 = x0 + 0.35
    kind = _kind(m)
    conn = "" if pd.isna(m.conn) else f"conn {int(m.conn)} · "
    hover = (f"<b>frame {int(m.frame)}</b> +{m.t:.6f} s<br>{safe(m.src_addr)} → {safe(m.dst_addr)}<br>"
             f"{conn}{safe(m.layer)}<br><b>{safe(m.label)}</b>")
    return Arrow(x0, x1, t, style=kind, text=safe(m.label), sep=", ", rank=RANK[kind], tag=f"#{int(m.frame)}",
                 hover=hover, data=dict(frame=int(m.frame)))


def lane_order(msgs: pd.DataFrame) -> list[str]:
    """Hosts in the order they first appear, each message's sender before its receiver."""
    ends = [None] * (2 * len(msgs))
    ends[0::2], ends[1::2] = msgs["src"].tolist(), msgs["dst"].tolist()
    return list(dict.fromkeys(map(str, ends)))


def _kind(m) -> str:
    label = str(m.label)
    if "RST" in label or _ERROR_STATUS.search(label):
        return "error"
    if "retransmission" in label:
        return "retransmission"
    if m.layer in ("http", "h2", "h3"):
        return "http"
    if m.layer in ("tls", "quic"):
        return "tls"
    if label.startswith(("SYN", "ACK")):
        return "open"
    if label.startswith("FIN"):
        return "close"
    return "tcp"


_ERROR_STATUS = re.compile(r"(^|: )[45]\d\d\b")
