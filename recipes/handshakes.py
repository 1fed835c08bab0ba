"""How long did the TCP handshakes take, and did any go wrong?

One row per TCP connection: when the SYN, SYN-ACK and ACK passed the
capture point, the handshake round trip and its two halves (SYN -> SYN-ACK is
the round trip on the server's side of the capture point, SYN-ACK -> ACK the
client's side), retransmitted SYNs and how the connection ended.

The round trip is measured as Wireshark's ``tcp.analysis.initial_rtt``: from
the SYN that was answered to the ACK that completed the handshake.  Time
spent waiting for a retransmitted SYN is reported apart (``syn_wait``),
because it is not network delay but a lost packet and a timer.

    python recipes/handshakes.py capture.pcap [--conn N] [--chart ladder.html]
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from traceviz.errors import InputError
from traceviz.model import JSON_FIELDS as STABLE_FIELDS
from traceviz.recipe import Finding

NAME = "handshakes"
TITLE = "TCP handshakes"
NEEDS = "TCP connections whose packets were captured (a HAR or a DevTools trace has no SYNs to time)"
FAILS_ON = "a connection refused, a SYN never answered, a retransmitted SYN, or a client that gave up on its handshake"
EXAMPLE = "tcp-handshakes"       # the bundled capture the chart gallery draws from
TABLES = ("connections", "packets")   # what analyze() reads: load() builds only these (and what they are made of)
CHART_TABLES = ("events",)            # what only the ladder reads besides
KEEPALIVE_FACTS = False    # its rows carry the connections' TCP and TLS facts, not their keep-alive facts
FIGURES = {"ladder": "one connection's packets between client and server, the handshake's round trip split at the "
                     "capture point",
           "rtt": "the handshake round trips of every connection: their distribution and over time (5+ connections)"}

JSON_FIELDS = STABLE_FIELDS["connections"]    # the stable --json fields, in order
ROW_FIELDS = JSON_FIELDS + ["rtt_server", "rtt_client", "irtt", "syn_wait", "syn_backoff",
                            "mss_client", "mss_server", "wscale_client", "wscale_server",
                            "sack_permitted"]
# The TCP tier's handshake details (decode/tcp/connections.py), after the others.
DETAIL_FIELDS = ["last_syn", "synack_lost", "server_half", "client_half"]
RTT_VIEW_MIN = 5          # connections before the across-connections view is worth drawing
LIST_MAX = 4              # name at most this many conns in one sentence


def applies(tl) -> bool:
    """TCP connections whose packets were captured (a HAR's connections have no SYNs to time)."""
    c = tl.connections
    return len(c) > 0 and bool(((c["transport"] == "tcp") & c["syn"].notna()).any())


def analyze(tl, conn: int | None = None) -> Finding:
    rows = handshake_rows(tl.connections)
    if conn is not None and not (rows["conn"] == conn).any():
        have = _conn_list(rows["conn"].tolist()) or "none"
        raise InputError(tl.source.path, f"no TCP connection {conn} (TCP connections here: {have})")
    summary = summarize(rows)
    # Only connections without a SYN-ACK need their packets (did the client give up?): a dataset
    # of a big capture reads those, not all of them.
    unanswered = tl.packets_of(rows.loc[rows["synack"].isna(), "conn"].tolist())
    problems = troubles(rows, unanswered)
    answer = explain(rows, summary, unanswered)
    figures = {}
    if len(rows):
        focus = conn if conn is not None else most_interesting(rows)
        focus_row = rows[rows["conn"] == focus].iloc[0]
        figures["ladder"] = lambda theme="light": _ladder(tl, focus_row, theme)
        if len(rows) >= RTT_VIEW_MIN:
            figures["rtt"] = lambda theme="light": _rtt(rows, theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows, summary=summary,
                   answer=answer, figures=figures, json_fields=JSON_FIELDS, problems=problems)


# --- the table ----------------------------------------------------------------------------

def handshake_rows(connections: pd.DataFrame) -> pd.DataFrame:
    """The TCP rows of ``connections``, the handshake fields first (unknown where the
    source has no packets to time them from, e.g. a HAR)."""
    c = connections[connections["transport"] == "tcp"].copy()
    for col in ROW_FIELDS + DETAIL_FIELDS:
        if col not in c.columns:
            c[col] = pd.NA
    extra = [col for col in c.columns if col not in ROW_FIELDS]
    return c[ROW_FIELDS + extra].sort_values("conn", kind="stable").reset_index(drop=True)


def _backoff(value) -> list[float]:
    if value is None or value is pd.NA:
        return []
    if isinstance(value, float) and math.isnan(value):
        return []
    try:
        return [float(v) for v in value]
    except TypeError:
        return []


# --- the summary --------------------------------------------------------------------------

def summarize(rows: pd.DataFrame) -> dict:
    irtt = rows["irtt"].dropna()
    close = rows["close"].astype("string")
    retx = pd.to_numeric(rows["syn_retransmits"], errors="coerce").fillna(0)
    return {
        "connections": int(len(rows)),
        "completed": int(rows["ack"].notna().sum()),
        "median_handshake_ms": _ms(irtt.median()) if len(irtt) else None,
        "p95_handshake_ms": _ms(irtt.quantile(0.95)) if len(irtt) else None,
        "max_handshake_ms": _ms(irtt.max()) if len(irtt) else None,
        "refused": int((close == "refused").sum()),
        "unanswered": int((close == "unanswered").sum()),
        "syn_retries": int(retx.sum()),
        "connections_with_syn_retries": int((retx > 0).sum()),
    }


def _ms(seconds) -> float | None:
    if seconds is None or pd.isna(seconds):
        return None
    return round(float(seconds) * 1000.0, 3)


# --- the explanation ----------------------------------------------------------------------

def explain(rows: pd.DataFrame, summary: dict, packets: pd.DataFrame | None = None) -> list[str]:
    """Plain-language findings, the most important first."""
    if not len(rows):
        return ["No TCP connections in this capture."]
    problems = troubles(rows, packets) + _capitalised(_reordered(rows))
    out = [_overview(summary)] + problems + _timing(rows)
    if not problems and summary["completed"] == summary["connections"]:
        out.append("Every handshake completed at the first attempt: nothing unusual.")
    return _capitalised(out)


def troubles(rows: pd.DataFrame, packets: pd.DataFrame | None = None) -> list[str]:
    """What went wrong on the way to a connection (``FAILS_ON``): what ``--fail`` stops on."""
    return _capitalised(_syn_retries(rows) + _refused(rows) + _unanswered(rows, packets) + _abandoned(rows, packets))


def _capitalised(lines: list[str]) -> list[str]:
    return [line[0].upper() + line[1:] for line in lines]


def _overview(s: dict) -> str:
    n, done = s["connections"], s["completed"]
    text = f"{_n(n, 'TCP connection')}; {done or 'none'} completed the three-way handshake"
    if s["median_handshake_ms"] is not None:
        if done == 1:
            text += f" in {_dur(s['median_handshake_ms'] / 1000)}"
        else:
            text += (f" (median {_dur(s['median_handshake_ms'] / 1000)}, "
                     f"p95 {_dur(s['p95_handshake_ms'] / 1000)}, SYN to ACK at the capture point)")
    return text + "."


def _syn_retries(rows: pd.DataFrame) -> list[str]:
    retx = pd.to_numeric(rows["syn_retransmits"], errors="coerce").fillna(0)
    # an unanswered connection is told once, by _unanswered
    hit = rows[(retx > 0) & (rows["close"].astype("string") != "unanswered").fillna(True)]
    if not len(hit):
        return []
    out = []
    lost_synack = hit[hit["synack_lost"]]
    hit = hit[~hit["synack_lost"]]
    # Group connections that waited about as long: one sentence per distinct wait.
    groups: dict[float, list] = {}
    for r in hit.itertuples(index=False):
        groups.setdefault(round(float(r.syn_wait), 1), []).append(r)
    for _, rs in sorted(groups.items(), key=lambda kv: -kv[0]):
        wait = float(np.mean([r.syn_wait for r in rs]))
        tries = int(sum(int(r.syn_retransmits) for r in rs))
        gaps = sorted({round(g, 2) for r in rs for g in _backoff(r.syn_backoff)})
        who = "1 connection" if len(rs) == 1 else f"{len(rs)} connections"
        first = f"{who} ({_conn_list([r.conn for r in rs])}) waited {_dur(wait)} for a retransmitted SYN"
        if tries > len(rs):
            first += f" ({tries} retransmissions)"
        one = len(rs) == 1
        why = (f"{'its' if one else 'each'} first SYN got no reply, and the client's kernel resent it "
               f"when its retransmission timer ran out")
        if gaps:
            why += f" ({_gap_text(gaps)})"
        if gaps and gaps[0] >= 0.9:
            why += ". The timer starts at 1 s (RFC 6298; Linux) and doubles with each retry"
        answered = [r for r in rs if not pd.isna(r.ack)]
        if answered and len(answered) == len(rs):
            why += (". Somewhere between the capture point and the server the SYN or its SYN-ACK was "
                    "lost, or the server dropped the SYN (a full listen queue)")
        elif not answered:
            why += ". No SYN was ever answered"
        out.append(f"{first}: {why}.")
    for r in lost_synack.itertuples(index=False):
        out.append(f"conn {r.conn} waited {_dur(r.syn_wait)} for a retransmitted SYN although the server had "
                   f"answered: its SYN-ACK passed the capture point {_dur(r.synack - r.syn)} after the first "
                   f"SYN, so the SYN-ACK was lost between the capture point and the client {r.client}.")
    return out


def _refused(rows: pd.DataFrame) -> list[str]:
    ref = rows[rows["close"].astype("string") == "refused"]
    out = []
    for server, grp in ref.groupby("server", sort=False):
        host, port = _split(server)
        n = len(grp)
        times = f"{n} connections" if n > 1 else "the connection"
        out.append(f"port {port} on {host} refused {times} ({_conn_list(grp['conn'].tolist())}; "
                   f"RST in reply to SYN): nothing was listening on that port, or a firewall rejected it.")
    return out


def _unanswered(rows: pd.DataFrame, packets: pd.DataFrame | None) -> list[str]:
    un = rows[rows["close"].astype("string") == "unanswered"]
    gave_up = _client_resets(packets, un)
    out = []
    for server, grp in un.groupby("server", sort=False):
        n = len(grp)
        tries = int(pd.to_numeric(grp["syn_retransmits"], errors="coerce").fillna(0).sum()) + n
        what = "a SYN" if tries == 1 else f"{tries} SYNs"
        to = f"{n} connections to {server}" if n > 1 else f"conn {grp['conn'].iloc[0]} to {server}"
        reset = {int(c): gave_up[int(c)] for c in grp["conn"] if int(c) in gave_up}
        if reset and len(reset) == n:
            after = ", ".join(_dur(v) for v in reset.values())
            out.append(f"{to}: {what} got no reply before the client gave up and reset the connection "
                       f"({after} after its first SYN).")
        else:
            gaps = [g for b in grp["syn_backoff"] for g in _backoff(b)]
            when = f" ({_gap_text(gaps).replace('after', 'resent after', 1)})" if gaps and n == 1 else ""
            out.append(f"{to}: {what} got no reply in the capture{when}: the server or something on the path "
                       f"dropped {'it' if tries == 1 else 'them'} silently, or the capture ended first.")
    return out


def _client_resets(packets: pd.DataFrame | None, conns: pd.DataFrame) -> dict[int, float]:
    """conn -> seconds from its first SYN to the client's RST, for the given connections."""
    if packets is None or not len(conns) or not {"conn", "dir", "flags", "ts"} <= set(packets.columns):
        return {}
    pk = packets[packets["conn"].isin(conns["conn"].tolist())]
    rst = pk[(pk["dir"] == "c2s") & pk["flags"].astype("string").str.contains("RST", na=False)]
    first = rst.groupby("conn")["ts"].min()
    syn = conns.set_index("conn")["syn"]
    return {int(c): float(t - syn.loc[c]) for c, t in first.items() if c in syn.index and not pd.isna(syn.loc[c])}


def _abandoned(rows: pd.DataFrame, packets: pd.DataFrame | None) -> list[str]:
    gave_up = rows[rows["synack"].isna() & (rows["close"].astype("string") == "rst-client")]
    if not len(gave_up):
        return []
    after = _client_resets(packets, gave_up)
    if len(gave_up) == 1 and after:
        conn = int(gave_up["conn"].iloc[0])
        return [f"conn {conn}: the client reset the connection {_dur(after[conn])} after its first SYN, before "
                f"any SYN-ACK arrived: it gave up on the handshake (a cancelled connect or an application "
                f"timeout), not the server."]
    return [f"{_conns_word(gave_up)} reset by the client before any SYN-ACK arrived "
            f"({_conn_list(gave_up['conn'].tolist())}): the client gave up on the handshake."]


def _reordered(rows: pd.DataFrame) -> list[str]:
    odd = rows[rows["synack"].notna() & rows["syn"].notna() & (rows["synack"] < rows["syn"])]
    if not len(odd):
        return []
    return [f"{_conn_list(odd['conn'].tolist())}: the SYN-ACK was captured before its SYN, "
            f"so the capture saw these packets out of order (several interfaces or CPU queues writing one "
            f"file); the handshake cannot be split into its server and client halves."]


def _timing(rows: pd.DataFrame) -> list[str]:
    """The slowest handshake when it stands out, and where the capture point sits on the path."""
    done = rows[rows["irtt"].notna()]
    if not len(done):
        return []
    median = done["irtt"].median()
    slow = done.loc[done["irtt"].idxmax()]
    if len(done) == 1:
        text = _split_text(slow, "the handshake")
        return [text] if "capture point" in text else []     # else the overview said it all
    out = []
    if slow["irtt"] >= 1.5 * median and slow["irtt"] - median >= 0.001:
        text = _split_text(slow, f"the slowest handshake, conn {slow['conn']},")
        if median > 0 and slow["irtt"] >= 3 * median:
            text += f" That is {slow['irtt'] / median:.0f}\u00d7 the median."
        out.append(text)
    where = _capture_point(done)
    return out + ([where] if where else [])


def _capture_point(done: pd.DataFrame) -> str | None:
    """Every handshake split the same lopsided way says which end the capture was taken at."""
    ok = done[(done["irtt"] >= 20e-6) & done["server_half"].notna() & done["client_half"].notna()]
    if len(ok) < 2:
        return None
    share = ok["server_half"] / ok["irtt"]
    if share.min() >= 0.9:
        return (f"The capture point sits next to the client: SYN \u2192 SYN-ACK is practically the whole "
                f"round trip (median {_dur(ok['server_half'].median())}), and the client answers a SYN-ACK "
                f"within {_dur(ok['client_half'].median())}.")
    if share.max() <= 0.1:
        return (f"The capture point sits next to the server: the server answers a SYN within "
                f"{_dur(ok['server_half'].median())}, and SYN-ACK \u2192 ACK, the path to the client and "
                f"back, takes the rest (median {_dur(ok['client_half'].median())}).")
    return None


def _split_text(r, subject: str) -> str:
    total, sh, ch = r["irtt"], r["server_half"], r["client_half"]
    text = f"{subject[0].upper()}{subject[1:]} took {_dur(total)}"
    # Below ~20 us the split is timestamp noise (captures tick in microseconds).
    if total >= 20e-6 and not pd.isna(sh) and not pd.isna(ch) and sh >= 0:
        if sh >= 0.67 * total:
            text += f": {_dur(sh)} of it on the server side of the capture point (SYN \u2192 SYN-ACK)"
        elif ch >= 0.67 * total:
            text += f": {_dur(ch)} of it on the client side of the capture point (SYN-ACK \u2192 ACK)"
        else:
            text += f": {_dur(sh)} on the server side of the capture point, {_dur(ch)} on the client side"
    return text + "."


# --- figures ------------------------------------------------------------------------------

def most_interesting(rows: pd.DataFrame) -> int:
    """A retransmitted-SYN, refused or unanswered connection if any, else the slowest handshake."""
    retx = pd.to_numeric(rows["syn_retransmits"], errors="coerce").fillna(0)
    close = rows["close"].astype("string")
    for mask in (retx > 0, close == "refused", close == "unanswered"):
        hit = rows[mask.fillna(False)]
        if len(hit):
            return int(hit["conn"].iloc[0])
    done = rows[rows["irtt"].notna()]
    if len(done):
        return int(done.loc[done["irtt"].idxmax(), "conn"])
    return int(rows["conn"].iloc[0])


def _ladder(tl, row, theme):
    from traceviz.charts.ladder import ladder
    # The whole connection to scale: it opens on the handshake and scrolls to the rest.
    return ladder(tl.packets_of([row["conn"]]), row, theme=theme, events=tl.events)


def _rtt(rows, theme):
    from traceviz.charts.rtt import handshake_rtt_view
    return handshake_rtt_view(rows, theme=theme)


# --- words --------------------------------------------------------------------------------

def _dur(seconds: float) -> str:
    from traceviz.charts.text import fmt_ms
    return fmt_ms(float(seconds))


def _gap_text(gaps: list[float]) -> str:
    return "after " + ", then ".join(_dur(g) for g in gaps) if len(gaps) > 1 else f"after {_dur(gaps[0])}"


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _conns_word(df) -> str:
    return "1 connection was" if len(df) == 1 else f"{len(df)} connections were"


def _conn_list(conns: list) -> str:
    conns = [int(c) for c in conns]
    shown = ", ".join(str(c) for c in conns[:LIST_MAX])
    more = f" and {len(conns) - LIST_MAX} more" if len(conns) > LIST_MAX else ""
    return ("conn " if len(conns) == 1 else "conns ") + shown + more if conns else ""


def _split(endpoint) -> tuple[str, str]:
    text = str(endpoint)
    host, _, port = text.rpartition(":")
    return host.strip("[]") or text, port


def _f(v) -> float | None:
    if v is None or v is pd.NA:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
