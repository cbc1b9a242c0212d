"""The whole-file digest: the same bytes as blake3's own file hashing, and a file truncated
while it is read ends the digest early (its size tells), never the process (no memory map)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import blake3

from resumeguard.io.hashing import CHUNK, digest_file


def test_the_digest_is_blake3_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.bin"
    for size in (0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 5):
        data = os.urandom(size)
        path.write_bytes(data)
        assert digest_file(path) == ("blake3:" + blake3.blake3(data).hexdigest(), size)


def test_a_file_truncated_while_it_is_read_ends_the_digest_not_the_process(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ckpt.bin"
    data = os.urandom(4 * CHUNK)
    path.write_bytes(data)
    full = digest_file(path)
    stop = threading.Event()

    def truncate_and_restore() -> None:
        with open(path, "r+b") as f:
            while not stop.is_set():
                f.truncate(CHUNK // 2)  # a memory map of the file would now raise SIGBUS
                f.seek(0)
                f.write(data)
                f.flush()

    shrinking = threading.Thread(target=truncate_and_restore)
    shrinking.start()
    try:
        results = [digest_file(path) for _ in range(20)]
    finally:
        stop.set()
        shrinking.join()
    # The process is alive; each digest read what the file held while it was read.
    assert len(results) == 20 and all(size <= full[1] for _, size in results)
