"""Bearer tokens by name, for each role (client, admin), re-read from their file when it changes.

A role's tokens are a file of `{name: token}` (YAML or JSON; a Kubernetes Secret mounted as a
volume, which the kubelet updates in place) or, when no file is set, the one token of the role's
environment variable, named `default` (client) or `admin`. Several names per role let a token be
rotated without a gap: add the new one, move the clients, drop the old one, no restart. The
file is looked at (a `stat`) at most once per `RECHECK_SECONDS`, on the request path, and read
only when its modification time, size or inode changed. A file that cannot be read or is not
valid (a half-written edit, a token in both roles) is refused and counted and the tokens before
it stay, so a bad edit never locks every client out; at start-up the same problems stop the
server instead.

Only names leave this module (the prediction log's `client`, logs, metrics), never tokens.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from prometheus_client import CollectorRegistry, Counter

from serving.config import (
    ADMIN_TOKEN_VARIABLE,
    ADMIN_TOKENS_FILE_VARIABLE,
    TOKEN_VARIABLE,
    TOKENS_FILE_VARIABLE,
    ConfigError,
    ServingConfig,
)

log = logging.getLogger("serving.tokens")
Role = Literal["client", "admin"]
RECHECK_SECONDS = 1.0
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ENV_NAMES: dict[Role, str] = {"client": "default", "admin": "admin"}
Signature = tuple[int, int, int]
"""(mtime in ns, size, inode) of a file: any edit, or the kubelet's swap of a Secret volume, changes one."""


class TokenFileError(ValueError):
    """A tokens file that cannot be used; the message names the file and the entry, never a token."""


@dataclass(frozen=True)
class TokenSet:
    """One role's tokens: name -> token."""

    tokens: Mapping[str, str]

    def name_of(self, given: bytes) -> str | None:
        """The name of the token `given` is, compared in constant time with each one."""
        found = None
        for name, token in self.tokens.items():
            if hmac.compare_digest(given, token.encode()) and found is None:
                found = name
        return found

    def overlaps(self, other: TokenSet) -> bool:
        return bool(set(self.tokens.values()) & set(other.tokens.values()))


def parse_tokens(text: str, where: str) -> TokenSet:
    """A `{name: token}` mapping of YAML or JSON (JSON is YAML), every name and token checked."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TokenFileError(f"{where} is neither YAML nor JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not data:
        raise TokenFileError(f"{where} must hold a non-empty mapping of name to token")
    tokens: dict[str, str] = {}
    for name, token in data.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise TokenFileError(
                f"{where}: the name {str(name)[:64]!r} is not 1-64 letters, digits, '.', '_' or '-'"
            )
        if not isinstance(token, str) or not token or any(c.isspace() for c in token):
            raise TokenFileError(f"{where}: the token of {name!r} must be a non-empty string without spaces")
        tokens[name] = token
    if len(set(tokens.values())) < len(tokens):
        raise TokenFileError(f"{where}: two names share a token, so a request could not be told apart")
    return TokenSet(tokens)


def signature(path: Path) -> Signature | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class TokenFile:
    """One role's file: its last valid tokens, and whether the file has changed since they were read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signature = signature(path)
        self.tokens = self.read()

    def read(self) -> TokenSet:
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(f"cannot read {self.path}: {type(exc).__name__}") from None
        return parse_tokens(text, str(self.path))

    def changed(self) -> TokenSet | None:
        """The file's tokens if it changed since the last look (raises TokenFileError if invalid); else None."""
        now = signature(self.path)
        if now == self.signature:
            return None
        self.signature = now
        return self.read()


class Tokens:
    """Both roles' tokens; `identify` answers which role and name a bearer token is."""

    def __init__(
        self,
        client: TokenSet | Path,
        admin: TokenSet | Path,
        recheck_seconds: float = RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._files: dict[Role, TokenFile] = {}
        self._sets: dict[Role, TokenSet] = {}
        for role, source in (("client", client), ("admin", admin)):
            if isinstance(source, Path):
                self._files[role] = TokenFile(source)
                self._sets[role] = self._files[role].tokens
            else:
                self._sets[role] = source
        if self._sets["client"].overlaps(self._sets["admin"]):
            raise TokenFileError("a token is both a client and an admin token")
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._checked = clock()
        self._lock = threading.Lock()
        self.reloads = Counter(
            "serving_token_reloads",
            "Changed token files read, by role and outcome (loaded, refused: the tokens before stay).",
            ["role", "outcome"],
            registry=None,
        )

    @classmethod
    def from_config(cls, config: ServingConfig) -> Tokens:
        """The config's files, else its environment tokens; ConfigError when a file is not usable."""
        try:
            return cls(
                config.tokens_file or TokenSet({ENV_NAMES["client"]: config.token}),
                config.admin_tokens_file or TokenSet({ENV_NAMES["admin"]: config.admin_token}),
            )
        except TokenFileError as exc:
            raise ConfigError(
                f"{exc} (see {TOKENS_FILE_VARIABLE}, {ADMIN_TOKENS_FILE_VARIABLE}, "
                f"{TOKEN_VARIABLE}, {ADMIN_TOKEN_VARIABLE})"
            ) from None

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self.reloads)

    def identify(self, given: str) -> tuple[Role, str] | None:
        """(role, name) of a bearer token, or None when it is no token of either role."""
        self._refresh()
        encoded = given.encode()
        for role in ("client", "admin"):
            name = self._sets[role].name_of(encoded)
            if name is not None:
                return role, name
        return None

    def _refresh(self) -> None:
        """At most every `recheck_seconds`: re-read the files that changed, keeping what was valid."""
        if not self._files or self._clock() - self._checked < self.recheck_seconds:
            return
        with self._lock:
            if self._clock() - self._checked < self.recheck_seconds:
                return
            self._checked = self._clock()
            for role, file in self._files.items():
                try:
                    tokens = file.changed()
                    if tokens is None:
                        continue
                    other = self._sets["admin" if role == "client" else "client"]
                    if tokens.overlaps(other):
                        raise TokenFileError(f"{file.path}: a token is both a client and an admin token")
                except TokenFileError as exc:
                    self.reloads.labels(role, "refused").inc()
                    log.error("%s tokens not reloaded, the previous ones stay: %s", role, exc)
                    continue
                self._sets[role] = tokens
                self.reloads.labels(role, "loaded").inc()
                log.info("%s tokens reloaded from %s: %s", role, file.path, ", ".join(sorted(tokens.tokens)))
