"""A W&B-protocol server for tests: the real wandb client (wandb-core and ``wandb.Api``) talks to
it over HTTP on 127.0.0.1 as it would to W&B, and it stores what the client writes."""

from wandb_server.server import API_KEY, ENTITY, Fault, Request, WandbServer

__all__ = ["API_KEY", "ENTITY", "Fault", "Request", "WandbServer"]
