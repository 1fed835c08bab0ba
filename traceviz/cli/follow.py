"""``traceviz follow``: one connection's bytes, as tshark's ``-z follow`` prints them."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from traceviz import output
from traceviz.cli.common import FileArg, JsonOpt, KeylogOpt, RsaOpt, app, guarded, rows_json, show_warnings
from traceviz.errors import InputError

FORMATS = ("ascii", "hex")
RULE = "=" * 67


@app.command()
def follow(file: FileArg,
           conn: Annotated[int, typer.Option("--conn", help="Connection number (Wireshark's tcp.stream; UDP flows follow).",
                                             show_default=False)],
           stream: Annotated[Optional[int], typer.Option("--stream", help="Only this stream id: an HTTP/2 stream's headers and DATA, or a QUIC stream's bytes (HTTP/3 frames).",
                                                         show_default=False)] = None,
           format: Annotated[str, typer.Option("--format", help="ascii (bytes outside printable ASCII as '.') or hex.")] = "ascii",
           raw: Annotated[bool, typer.Option("--raw", help="The TCP bytes as captured, even when keys could decrypt them.")] = False,
           json: JsonOpt = None, keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """A connection's bytes in reading order, each direction marked (like [italic]tshark -z follow,tcp,ascii,N[/italic]); decrypted with keys."""
    with guarded():
        mode = rows_json(json)
        if format not in FORMATS:
            raise InputError("--format", f"unknown {format!r}: choose ascii or hex")
        if len(file) != 1:   # frame and connection numbers are one file's (Wireshark's)
            raise InputError(" ".join(file), f"follow reads one capture file ({len(file)} given)")
        from traceviz.loader import follow as follow_stream
        f = follow_stream(file[0], conn, keylog=keylog, rsa_key=rsa_key, stream=stream, decrypt=not raw)
        show_warnings(f.notes)
        if mode:
            output.print_json(records(f))
            return
        text = render(f, format)
        if sys.stdout.isatty():
            text = terminal_safe(text)
        sys.stdout.write(text)


def render(f, fmt: str = "ascii") -> str:
    """The followed stream in tshark's layout: a header naming the two nodes, then each
    chunk's length and bytes (the server's indented by a tab), then a closing rule."""
    from traceviz.decode.follow import Gap

    layer = {"tcp": "tcp", "tls": "tls", "h2": "http2", "udp": "udp", "quic": "quic"}[f.kind]
    flt = f"{'udp' if f.kind == 'udp' else 'tcp'}.stream eq {f.flow}"
    if f.kind == "h2":
        flt += f" and http2.streamid eq {f.stream}"
    if f.kind == "quic":
        flt = f"quic.connection.number eq {f.flow} and quic.stream.stream_id eq {f.stream}"
    # Node 0 is whoever sent the connection's first packet; node 1's chunks are indented.
    nodes = (f.client, f.server) if f.first == "c2s" else (f.server, f.client)
    lines = ["", RULE, f"Follow: {layer},{fmt}", f"Filter: {flt}", f"Node 0: {nodes[0]}", f"Node 1: {nodes[1]}"]
    out = "\n".join(lines) + "\n"
    offset = {"c2s": 0, "s2c": 0}
    for ch in f.chunks:
        indent = "" if ch.dir == f.first else "\t"
        if isinstance(ch, Gap):
            missing = f"{ch.length} bytes" if ch.length is not None else "bytes"
            out += f"{indent}[{missing} missing in capture file]\n"
            offset[ch.dir] += ch.length or 0
            continue
        if fmt == "hex":
            out += hex_lines(ch.data, offset[ch.dir], indent)
        else:
            out += f"{indent}{len(ch.data)}\n{ascii_text(ch.data)}\n"
        offset[ch.dir] += len(ch.data)
    return out + RULE + "\n"


def ascii_text(data: bytes) -> str:
    """Printable ASCII, CR and LF as they are; every other byte as '.' (tshark's ascii)."""
    return data.decode("latin-1").translate(_DOTS)


_DOTS = {i: "." for i in range(256) if not (0x20 <= i < 0x7f or i in (0x0a, 0x0d))}


def hex_lines(data: bytes, offset: int, indent: str = "") -> str:
    """tshark's hex layout: the direction's offset, 16 bytes in two groups of 8, their ASCII."""
    out = []
    for at in range(0, len(data), 16):
        row = data[at:at + 16]
        cells = "".join((f"{row[i]:02x} " if i < len(row) else "   ") + (" " if i == 7 else "") for i in range(16))
        text = "".join(chr(b) if 0x20 <= b < 0x7f else "." for b in row)
        text = text[:8] + (" " + text[8:] if len(text) > 8 else "")
        line = f"{indent}{offset + at:08X}  {cells} {text}"
        if len(row) > 8 and line.endswith(" "):
            line = line[:-1]      # as tshark 4.0 prints a line past 8 bytes whose last byte is a blank
        out.append(line + "\n")
    return "".join(out)


def terminal_safe(text: str) -> str:
    """On a terminal a lone carriage return could redraw a line the capture chose: CR LF
    ends a line, any other CR is shown as \\r."""
    return text.replace("\r\n", "\n").replace("\r", "\\r")


def records(f) -> list[dict]:
    """The chunks as JSON rows: dir, frame, ts, what, size, text (escaped) and hex."""
    from traceviz.decode.follow import Gap

    rows = []
    for ch in f.chunks:
        if isinstance(ch, Gap):
            rows.append({"conn": f.conn, "stream": f.stream, "dir": ch.dir, "frame": None, "ts": None, "what": "gap",
                         "size": ch.length, "text": None, "hex": None})
        else:
            rows.append({"conn": f.conn, "stream": f.stream, "dir": ch.dir, "frame": ch.frame, "ts": ch.ts,
                         "what": ch.what, "size": len(ch.data), "text": output.printable(ch.data.decode("latin-1")),
                         "hex": ch.data.hex()})
    return rows
