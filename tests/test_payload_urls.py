"""A request that names no host still gets a full URL: the SNI, else the server's address."""

from __future__ import annotations

import subprocess

import traceviz


def test_http10_request_without_host_uses_the_server_address(corpus, tshark):
    pcap = corpus / "pcap" / "tls-keys" / "tls-nss-example__scapy.pcap"
    keys = pcap.with_suffix(".keys")
    tl = traceviz.load(pcap, keylog=keys)
    # tshark's view of the same requests: the server address and the URI, no Host header
    out = subprocess.run([tshark, "-r", str(pcap), "-o", f"tls.keylog_file:{keys}", "-Y", "http.request",
                          "-T", "fields", "-e", "ip.dst", "-e", "http.request.uri", "-e", "http.host"],
                         capture_output=True, text=True, timeout=120).stdout.splitlines()
    want = [line.split("\t") for line in out]
    assert want and all(host == "" for _, _, host in want)
    assert tl.requests["url"].tolist() == [f"https://{ip}{uri}" for ip, uri, _ in want]   # port 443 is implied
    assert tl.requests["host"].isna().all()           # the table does not invent a Host header
