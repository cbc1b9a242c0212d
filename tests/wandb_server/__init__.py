"""A W&B-protocol server for tests: the real wandb client (wandb-core and ``wandb.Api``) talks to
it over HTTP on 127.0.0.1 as it would to W&B, and it stores what the client writes.

It speaks what wandb 0.31 sends for runs (init, resume, log, files, finish) and what the public
API reads of them (run, files, history keys, full history, upload_file, update). Not expressed:
``scan_history`` (wandb-core reads parquet history exports), artifacts, sweeps, reports, teams
and W&B's own server-side retries or rate-limit budgets; faults are injected explicitly.
"""

from wandb_server.server import API_KEY, ENTITY, Fault, Request, WandbServer

__all__ = ["API_KEY", "ENTITY", "Fault", "Request", "WandbServer"]
