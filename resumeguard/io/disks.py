"""Where a checkpoint file lies: the host that wrote it, and whether that host's own disk
holds it or a filesystem every node shares, so that a check on another node knows a file it
cannot see is elsewhere (another node's local disk) rather than missing (shared storage)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

Disk = Literal["local", "shared", ""]
"""``local``: a disk of the host that wrote it; ``shared``: a network or cluster filesystem;
``""``: not known (a platform without ``/proc``, or a record from before this was kept)."""

LOCAL_FILESYSTEMS = frozenset(
    {
        "apfs",
        "bcachefs",
        "btrfs",
        "exfat",
        "ext2",
        "ext3",
        "ext4",
        "f2fs",
        "hfs",
        "hfsplus",
        "jfs",
        "ntfs",
        "ntfs3",
        "overlay",
        "ramfs",
        "reiserfs",
        "tmpfs",
        "vfat",
        "xfs",
        "zfs",
    }
)
"""Filesystem types that live on the host's own disks (or memory). Every other type (nfs,
lustre, gpfs, beegfs, cephfs, a FUSE mount...) counts as shared: a file on it missing from
another node is missing, not elsewhere (failing closed)."""

MOUNTINFO = Path("/proc/self/mountinfo")


def this_host() -> str:
    """This machine's host name, as records name the host that wrote a file."""
    return socket.gethostname()


def disk_of(path: str | os.PathLike[str]) -> Disk:
    """Whether ``path`` (an existing file) lies on a local or a shared filesystem, from the
    mount that holds it in ``/proc/self/mountinfo``; "" where that cannot be read."""
    try:
        lines = MOUNTINFO.read_text(encoding="utf-8", errors="replace").splitlines()
        target = os.path.realpath(path)
    except OSError:
        return ""
    best, kind = "", ""
    for line in lines:
        fields = line.split(" ")
        if "-" not in fields or len(fields) < 5:
            continue
        mount = _unescape(fields[4])
        fstype = fields[fields.index("-") + 1] if fields.index("-") + 1 < len(fields) else ""
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, fstype
    if not best:
        return ""
    return "local" if kind in LOCAL_FILESYSTEMS else "shared"


def _unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes come as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field
