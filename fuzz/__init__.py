"""Fuzzing traceviz's decoders: one small target per decoder, three engines.

``python -m fuzz run TARGET --minutes 5`` fuzzes one decoder in-process;
``python -m fuzz list`` names the targets; ``fuzz/README.md`` has the rest.
"""
