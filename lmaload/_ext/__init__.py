"""Compiled extensions built from ext/*.pyx by setup.py (bulk codec, checksum, batched I/O)."""
