"""Loaded by every Python process that ``resumeguard run`` starts (its folder is first on
PYTHONPATH): install resumeguard's import hooks, then run the ``sitecustomize`` this one
shadows, if the interpreter has one."""

import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))

try:
    from resumeguard.launcher.hooks import install
except ImportError as e:  # another interpreter than the one resumeguard is installed in
    sys.stderr.write(f"resumeguard: not importable in {sys.executable} ({e}); not guarded\n")
else:
    install()


def _chain() -> None:
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == _HERE:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_shadowed_sitecustomize", candidate)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


_chain()
