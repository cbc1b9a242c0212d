"""Read what W&B itself logged for an offline run: its ``run-<id>.wandb`` transaction log.

The log is what ``wandb sync`` uploads, so it is the run's own truth about the last logged step
and whether the run exited. Its framing is LevelDB's log format as wandb writes it: a 7-byte
header (``":W&B"``, magic 0xBEE1, version), then 32 KiB blocks of chunks, each
``crc32 (uint32 LE) | length (uint16 LE) | type (uint8: full, first, middle, last) | data``,
the crc seeded with the type byte; a block's last < 7 bytes are padding. Each record is a
``wandb_internal_pb2.Record`` protobuf. Only the fields read here are declared (field numbers
from that schema), so reading a log costs no ``import wandb``; protobuf skips the rest.

wandb-core flushes the log every 15 s and at exit, so after ``kill -9`` the log holds exactly
what W&B will ever know of the run: a step that never reached it is not logged for W&B either.
A torn record at the end (the process died mid-write) ends the scan; what came before counts.
A bad record with more data after it is damage, not a tear: the steps logged after it cannot
be read, so the run's last step is unknown (:attr:`LogSummary.damaged`), never "nothing logged".
"""

from __future__ import annotations

import dataclasses
import functools
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

HEADER_LEN = 7
BLOCK_LEN = 32768
_IDENT, _MAGIC = b":W&B", 0xBEE1
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_CRC = {t: zlib.crc32(bytes((t,))) & 0xFFFFFFFF for t in (_FULL, _FIRST, _MIDDLE, _LAST)}


@dataclasses.dataclass(frozen=True)
class LogSummary:
    """What one transaction log says about its run."""

    last_step: int | None
    """The highest history step logged, None when nothing was logged."""
    exit_code: int | None
    """The exit code W&B recorded at the run's end; None while running or after a kill."""
    damaged: str = ""
    """Why the log cannot be read to its end (a bad record before its tail), "" when it can:
    then :attr:`last_step` is only a lower bound."""


class Damaged(Exception):
    """A bad chunk or record with more data after it: the log is damaged before its tail."""


def chunks(stream: BinaryIO) -> Iterator[bytes]:
    """The records' payloads in a log opened for reading, oldest first, until a torn one (the
    last, cut short); read one block at a time, so memory stays bounded whatever the log's
    size. :class:`Damaged` for a bad chunk with more data after it, or a header that is not
    W&B's."""
    header = stream.read(HEADER_LEN)
    if len(header) < HEADER_LEN:
        if header.strip(b"\0"):
            raise Damaged("its header is cut short")
        return
    ident, magic, _version = struct.unpack("<4sHB", header)
    if ident != _IDENT or magic != _MAGIC:
        raise Damaged("it does not start with W&B's header")
    block, pos = header + stream.read(BLOCK_LEN - HEADER_LEN), HEADER_LEN
    pending = bytearray()
    while block:
        if BLOCK_LEN - pos < HEADER_LEN:  # block trailer: on to the next block
            block, pos = stream.read(BLOCK_LEN), 0
            continue
        if pos + HEADER_LEN > len(block):
            _torn(block[pos:], stream)
            return
        crc, length, kind = struct.unpack("<IHB", block[pos : pos + HEADER_LEN])
        if kind == 0 and length == 0:  # zero padding up to the next block
            block, pos = stream.read(BLOCK_LEN), 0
            continue
        body = block[pos + HEADER_LEN : pos + HEADER_LEN + length]
        if len(body) < length or kind not in _CRC or zlib.crc32(body, _CRC[kind]) != crc:
            _torn(block[pos + HEADER_LEN + length :], stream)
            return  # torn or not yet written
        pos += HEADER_LEN + length
        if kind == _FULL:
            pending.clear()
            yield body
        elif kind == _FIRST:
            pending[:] = body
        elif kind == _MIDDLE:
            pending += body
        else:
            yield bytes(pending + body)
            pending.clear()


def _torn(rest: bytes, stream: BinaryIO) -> None:
    """Return when nothing but zero padding follows a bad chunk (a torn last record, as a
    kill leaves it); :class:`Damaged` when more data does."""
    while rest:
        if rest.strip(b"\0"):
            raise Damaged("a record that fails its checksum has more data after it")
        rest = stream.read(BLOCK_LEN)


@functools.cache
def _record_class() -> Any:
    """A protobuf message with just the fields of ``wandb_internal_pb2.Record`` read here:
    ``history`` (2) -> ``step`` (2) -> ``num`` (1); ``exit`` (18) -> ``exit_code`` (1)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="resumeguard_txlog.proto", package="rgtx")

    def message(name: str, *fields: tuple[str, int, int, str]) -> None:
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=kind)
            field.label = f.LABEL_OPTIONAL
            if type_name:
                field.type_name = type_name

    message("Step", ("num", 1, f.TYPE_INT64, ""))
    message("History", ("step", 2, f.TYPE_MESSAGE, ".rgtx.Step"))
    message("Exit", ("exit_code", 1, f.TYPE_INT32, ""))
    message(
        "Record",
        ("history", 2, f.TYPE_MESSAGE, ".rgtx.History"),
        ("exit", 18, f.TYPE_MESSAGE, ".rgtx.Exit"),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("rgtx.Record"))


def read_log(path: Path) -> LogSummary:
    """The last logged step and the exit code in the transaction log at ``path``."""
    from google.protobuf.message import DecodeError

    record_class = _record_class()
    last: int | None = None
    exit_code: int | None = None
    try:
        # Regular files only: a FIFO or a link to /dev/zero planted as the log would hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return LogSummary(None, None)  # no log (older wandb): W&B's log tells nothing
    except OSError as e:
        return LogSummary(None, None, f"{path} cannot be read ({e.strerror or e})")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return LogSummary(None, None)
    damaged, unparsable = "", False
    try:
        with os.fdopen(fd, "rb") as stream:
            for payload in chunks(stream):
                if unparsable:  # a record after the unparsable one: damage, not a tear
                    damaged = "a record that cannot be parsed has more records after it"
                    break
                record = record_class()
                try:
                    record.ParseFromString(payload)
                except DecodeError:
                    unparsable = True
                    continue
                if record.HasField("history"):
                    step = int(record.history.step.num)
                    last = step if last is None else max(last, step)
                if record.HasField("exit"):
                    exit_code = int(record.exit.exit_code)
    except Damaged as e:
        damaged = str(e)
    except OSError as e:
        damaged = f"it cannot be read ({e.strerror or e})"
    return LogSummary(last, exit_code, f"{path} is damaged: {damaged}" if damaged else "")


def run_log(directory: Path, run_id: str) -> Path:
    """Where wandb writes the transaction log of run ``run_id`` in its offline directory."""
    return directory / f"run-{run_id}.wandb"
