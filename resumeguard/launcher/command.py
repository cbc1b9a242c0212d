"""``resumeguard run [OPTIONS] -- CMD ARGS...``: run CMD with resumeguard loaded into every
Python process it starts, and return CMD's exit status, or the verdict's when a resume was
refused (1, or ``--block-exit-code``; 3 unverifiable; 2 bad input)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from resumeguard.options import REPORT_ENV

BOOTSTRAP = Path(__file__).resolve().parent / "bootstrap"
"""The folder put first on PYTHONPATH: it holds only the ``sitecustomize`` that loads the hooks."""

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
"""Signals passed on to CMD (Slurm's preemption warning and SIGTERM reach the script)."""

VERDICT_CODES = {"block": 1, "unverified": 3, "bad-input": 2}


USAGE = "resumeguard run [OPTIONS] -- CMD ARGS..."
HELP = (
    "Run a training command unmodified, guarded: every wandb.init, torch.save, torch.load, "
    "Accelerator and Lightning or Transformers Trainer in it is checked and recorded as "
    "resumeguard's own API would. A refused resume ends every process before the first "
    "training step (exit 1, or --block-exit-code; 3 unverifiable; 2 bad input); otherwise the "
    "command's own exit status is returned."
)


class _Wrap(argparse.HelpFormatter):
    """argparse's help, wrapped at spaces only: an option name (``--block-exit-code``) is never
    split at one of its hyphens."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(
            " ".join(text.split()),
            width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_on_hyphens=False,
        )


def parser() -> argparse.ArgumentParser:
    """``run``'s options (argparse: the command starts before a training job, so it imports
    no CLI framework)."""
    p = argparse.ArgumentParser(
        prog="resumeguard run", usage=USAGE, description=HELP, formatter_class=_Wrap
    )
    p.add_argument("--policy", help="preset (strict, lenient) or policy TOML file")
    p.add_argument("--storage", help="what to keep of each checkpoint: auto, digest, latest, all")
    p.add_argument("--offline", action="store_true", help="run W&B offline (WANDB_MODE=offline)")
    p.add_argument("--quiet", action="store_true", help="say only warnings and the report")
    p.add_argument(
        "--block-exit-code",
        type=int,
        default=1,
        help="exit status of a blocked resume (scripts exit 1 on any error too)",
    )
    p.add_argument("--report", type=Path, help="write the verdict and exit status here as JSON")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    return p


def main(argv: list[str]) -> int:
    """``resumeguard run``: parse, run CMD guarded, return the exit status."""
    from resumeguard.errors import BadInput

    try:
        options = parser().parse_args(argv)
    except SystemExit as e:  # --help, or argparse's own usage error
        return 0 if e.code in (0, None) else 2
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        raise BadInput(f"nothing to run: give the command after --, e.g. {USAGE}")
    return run(
        command,
        policy=options.policy,
        storage=options.storage,
        offline=options.offline,
        quiet=options.quiet,
        block_exit_code=options.block_exit_code,
        report=options.report,
    )


def run(
    command: list[str],
    *,
    policy: str | None = None,
    storage: str | None = None,
    offline: bool = False,
    quiet: bool = False,
    block_exit_code: int = 1,
    report: Path | None = None,
) -> int:
    """Run ``command`` guarded; its exit status, or the verdict's when a resume was refused."""
    from resumeguard.errors import BadInput

    if policy is not None or os.environ.get("RESUMEGUARD_POLICY"):
        from resumeguard.verdict import runpolicy

        runpolicy.validate(policy)
    if storage is not None:
        from resumeguard.checkpoint.storage import resolve

        resolve(storage)  # a bad value is bad input now, not in every worker later
    if not 0 <= block_exit_code <= 255:
        raise BadInput(f"--block-exit-code {block_exit_code} is not an exit status (0 to 255)")
    with tempfile.TemporaryDirectory(prefix="resumeguard-run-") as tmp:
        verdict_file = Path(tmp) / "verdict.json"
        env = _environment(
            verdict_file, policy=policy, storage=storage, offline=offline, quiet=quiet
        )
        status = _run_forwarding_signals(command, env)
        outcome = _read(verdict_file)
    verdict = str(outcome.get("verdict", "unchecked"))
    code = block_exit_code if verdict == "block" else VERDICT_CODES.get(verdict, status)
    if report is not None:
        outcome.update({"verdict": verdict, "exit_code": code, "command_exit_code": status})
        from resumeguard.io import atomic

        try:
            atomic.write_json(report, outcome)
        except OSError as e:
            raise BadInput(f"cannot write --report {report}: {e.strerror or e}") from None
    return code


def _environment(
    verdict_file: Path, *, policy: str | None, storage: str | None, offline: bool, quiet: bool
) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(BOOTSTRAP), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env[REPORT_ENV] = str(verdict_file)
    if policy is not None:
        env["RESUMEGUARD_POLICY"] = policy
    if storage is not None:
        env["RESUMEGUARD_STORAGE"] = storage
    if offline:
        env["WANDB_MODE"] = "offline"
    if quiet:
        env["RESUMEGUARD_QUIET"] = "1"
    return env


def _run_forwarding_signals(command: list[str], env: dict[str, str]) -> int:
    """CMD's exit status (128 + the signal that ended it); the signals this process gets are
    passed on. CMD runs in its own session, so a terminal's Ctrl-C reaches it once, through us."""
    from resumeguard.errors import BadInput

    try:
        child = subprocess.Popen(command, env=env, start_new_session=True)
    except FileNotFoundError:
        raise BadInput(f"command not found: {command[0]}") from None
    except PermissionError:
        raise BadInput(f"command not executable: {command[0]}") from None

    def forward(signum: int, frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    before = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        while True:
            try:
                status = child.wait()
                break
            except KeyboardInterrupt:  # pragma: no cover - SIGINT is forwarded, not raised
                continue
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    return 128 - status if status < 0 else status


def _read(verdict_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(verdict_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
