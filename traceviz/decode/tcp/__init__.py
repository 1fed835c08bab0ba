"""TCP (and UDP flows): Wireshark's stream numbering (``flows``), its sequence
analysis (``analysis``), the per-connection view and TCP events
(``connections``), and byte-stream reassembly for the payload tier
(``reassembly``).  numpy columns in, numpy columns out."""
