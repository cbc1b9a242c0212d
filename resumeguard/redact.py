"""Keep secrets out of everything resumeguard writes or prints.

Two kinds of secret reach what resumeguard records: credentials inside URLs (a private
requirement ``git+https://user:TOKEN@host/...``, a git remote, ``WANDB_BASE_URL``) and config
values whose key names a secret (``api_key``, ``hub_token``). A URL's user info is replaced by
:data:`MARKER` before anything is written (an environment-variable placeholder such as
``${PIP_TOKEN}`` is kept as written: it is no secret), and compared without it, so a rotated
token is no change while a new host, path, branch or commit still is. Secret config keys are
left out of records and reports and are not compared.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

MARKER = "***"
"""What stands in for removed user info or a secret query value."""

SECRET_KEYS = frozenset(
    {"api_key", "apikey", "access_key", "secret_key", "secret", "password", "passwd", "token"}
)
"""Config key names (case-insensitive) that hold a credential; names ending in ``_token``
(Transformers' ``hub_token``) too. ``RESUMEGUARD_SECRET_KEYS`` adds more (comma-separated)."""

SECRET_SUFFIXES = ("_token",)
"""Key name endings that mark a credential (not ``_key``: ``sort_key`` is a setting)."""

SPECIAL_TOKENS = frozenset(
    f"{kind}_token" for kind in ("bos", "eos", "pad", "unk", "sep", "cls", "mask")
)
"""Tokenizer settings that end in ``_token`` but name a vocabulary entry, not a credential:
changing one changes what the model computes, so they stay compared."""

_QUERY_SECRETS = frozenset(
    {
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
    }
)
"""Query parameters that carry credentials in signed download URLs."""

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_PLACEHOLDER = re.compile(r"\$\{[A-Za-z0-9_]+\}")
_SSH_SCHEMES = ("ssh", "git+ssh")


def is_secret_key(name: object, value: object = "") -> bool:
    """True for a config key whose value is a credential (see :data:`SECRET_KEYS`). A name that
    is a secret's only by its ``_token`` ending counts only for a text value: ``max_token: 512``
    is a setting, compared like any other (when unsure, it is a change)."""
    key = str(name).lower()
    if key in SECRET_KEYS or key in _extra_keys():
        return True
    return key.endswith(SECRET_SUFFIXES) and key not in SPECIAL_TOKENS and isinstance(value, str)


def _extra_keys() -> frozenset[str]:
    raw = os.environ.get("RESUMEGUARD_SECRET_KEYS", "")
    return frozenset(k.strip().lower() for k in raw.split(",") if k.strip())


def redact_url(url: str) -> str:
    """``url`` with its user info replaced by :data:`MARKER` (placeholders kept) and the values
    of credential query parameters masked; everything else as written."""
    return _rewrite(url, keep_userinfo=True)


def comparable_url(url: str) -> str:
    """``url`` without any user info (a marker, a placeholder or a token) and with credential
    query values masked: what two recorded URLs are compared by."""
    return _rewrite(url, keep_userinfo=False)


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def comparable_text(text: str) -> str:
    """``text`` with every URL in it in its comparable form (:func:`comparable_url`)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: comparable_url(m.group(0)), text)


def redact_tree(value: Any) -> Any:
    """A JSON value with every string in it (keys included) redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {redact_text(str(k)): redact_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(v) for v in value]
    return value


def without_secret_keys(value: Any) -> Any:
    """A JSON value without the keys that name a credential, at any depth."""
    if isinstance(value, Mapping):
        return {k: without_secret_keys(v) for k, v in value.items() if not is_secret_key(k, v)}
    if isinstance(value, list):
        return [without_secret_keys(v) for v in value]
    return value


def _rewrite(url: str, *, keep_userinfo: bool) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, sign, host = authority.rpartition("@")
    if sign:
        if not keep_userinfo:
            authority = host
        elif not _harmless_userinfo(scheme.lower(), userinfo):
            authority = f"{MARKER}@{host}"
    return f"{scheme}://{authority}{_mask_query(tail)}"


def _harmless_userinfo(scheme: str, userinfo: str) -> bool:
    """User info that holds no secret: placeholders for one (``${USER}:${TOKEN}``), or a login
    name alone in an ssh URL (ssh authenticates with keys, never with the URL)."""
    user, colon, password = userinfo.partition(":")
    if colon:
        return bool(_PLACEHOLDER.fullmatch(password)) and (
            not user or bool(_PLACEHOLDER.fullmatch(user)) or not _looks_secret(user)
        )
    if _PLACEHOLDER.fullmatch(user):
        return True
    return scheme in _SSH_SCHEMES and not _looks_secret(user)


def _looks_secret(user: str) -> bool:
    """A user name that may itself be a token: long, or with a token's prefix."""
    return len(user) > 24 or user.lower().startswith(("ghp_", "gho_", "github_pat_", "glpat-"))


def _mask_query(tail: str) -> str:
    path, q, query = tail.partition("?")
    if not q:
        return tail
    query, h, fragment = query.partition("#")
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        secret = eq and (is_secret_key(name) or name.lower() in _QUERY_SECRETS)
        parts.append(f"{name}={MARKER}" if secret else item)
    return f"{path}?{'&'.join(parts)}{h}{fragment}"


class RedactingFilter(logging.Filter):
    """Redacts every record logged through resumeguard's logger before a handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the message by its redacted text (arguments merged in first)."""
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_filter(logger: logging.Logger) -> None:
    """Attach one :class:`RedactingFilter` to ``logger`` (idempotent)."""
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
