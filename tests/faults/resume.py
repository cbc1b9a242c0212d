"""A training script that resumes the fault run: ``python resume.py START_AT HOLD_S``.

Waits until the wall-clock time START_AT (so that two copies start in the same instant), resumes
with ``resumeguard.init``, holds the run HOLD_S seconds, finishes. A refused resume prints its one
line and exits with resumeguard's status.
"""

from __future__ import annotations

import sys
import time

import resumeguard
from resumeguard.api.entry import exit_with

start_at, hold = float(sys.argv[1]), float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))
try:
    run = resumeguard.init(project="faults", id="faultrun", resume="must", config={"lr": 0.01})
except resumeguard.ResumeGuardError as e:
    exit_with(e)
print("went ahead", flush=True)
time.sleep(hold)
run.finish()
