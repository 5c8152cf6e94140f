"""The Ray Tune searcher (``ray``): trainables and driver in :mod:`.tune`, the results callback in :mod:`.callback`."""
