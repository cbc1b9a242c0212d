"""Fixtures of the fault suite (defined in faultkit, shared by its modules)."""

from faultkit import case, template

__all__ = ["case", "template"]
