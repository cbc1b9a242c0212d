"""The verdict core: which changes are harmless, and why.

This package may import :mod:`resumeguard.findings` and the standard library only; nothing in it
imports a collector, a store or a front door, so the rules that call a change harmless can be
read, and tested, in one place.
"""
