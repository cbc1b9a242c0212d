"""Bytes in and out, knowing nothing of runs: atomic writes and crash-safe staging, digests,
bounded reads, which disk holds a file, archives.

May import: :mod:`resumeguard.errors` and :mod:`resumeguard.redact` only.
"""
