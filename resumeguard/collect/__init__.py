"""Collectors: one module per fingerprint source, each returning a frozen record or Unavailable."""
