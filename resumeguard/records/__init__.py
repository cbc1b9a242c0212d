"""What resumeguard keeps: the fingerprint (versioned schema, its JSON and compact config forms)
and the run record with its checkpoint records and audit trail. Built from collectors' records;
parses what a store returns; judges nothing.

May import: :mod:`resumeguard.stores`, :mod:`resumeguard.collect`, :mod:`resumeguard.io` and the
base modules.
"""
