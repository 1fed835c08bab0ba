"""The assembler: the only code that turns decoded events and source records into
the Timeline's tables (``capture`` for packet captures, ``browser`` for HAR and
DevTools exports), computing each derived fact once."""
