"""A guarded job for `torchrun --nproc_per_node 2` whose decision fails on rank 0 with an error
that is not resumeguard's own (a project name that is not a string). Rank 0 then takes its time
to clean up, as jobs do (an emergency save, a report): the other rank must not wait for it."""

import os
import time
import traceback
from pathlib import Path

import resumeguard

REPO = Path(os.environ["REPO"])


@resumeguard.guard(repo=REPO, project=123)  # type: ignore[arg-type]
def main() -> None:
    Path(f"trained-{os.environ['RANK']}").write_text("ran")


if __name__ == "__main__":
    try:
        main()
    except TypeError:
        traceback.print_exc()
        time.sleep(60)  # cleaning up; torchrun ends it as soon as another rank fails
        raise
