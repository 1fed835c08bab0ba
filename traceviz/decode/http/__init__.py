"""HTTP observed from the wire: HTTP/1.x (``http1``), HTTP/2 (``http2``), and
HTTP/1.1 switching to h2c (``upgrade``).  Each is a sans-I/O machine fed both
directions of one connection; each returns typed events."""
