"""QUIC observed from the wire (RFC 9000/9001/9369 and the drafts before them).

``versions``   what a version number means: its name, its Initial salt, its Retry key
``packets``    datagrams cut into packets: long and short headers, coalesced
               packets, Version Negotiation, Retry (integrity tag checked)
``frames``     the frames inside a decrypted packet, as small frozen dataclasses
``keys``       packet protection: Initial keys from the version's salt, the
               others from an NSS key log; header protection and key update
``reassembly`` CRYPTO and STREAM bytes put back in order, gaps kept as gaps
``handshake``  the TLS handshake carried in CRYPTO frames, and the transport parameters
``connection`` one connection, both directions: ``QUICConnection``
``streams``    the payload tier's QUIC half: which UDP flows speak QUIC (numpy), and their machines
"""
