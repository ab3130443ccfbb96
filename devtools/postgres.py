"""A throwaway PostgreSQL server on 127.0.0.1, and the `k8s` profile's storage settings pointed at it.

The `k8s` profile keeps Dagster's runs, events and schedules in PostgreSQL
(`orchestration/instance/k8s.yaml`). Tests and benchmarks check that storage against a
real server instead of SQLite: `local_postgres()` runs `initdb` and `pg_ctl` from the
Debian package `postgresql` in a temporary folder, listens on loopback only with a
password, and removes everything on exit. PostgreSQL refuses to run as root, so when
this process is root the server runs as the `postgres` user (or `nobody`).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import yaml

from devtools.processes import START_TIMEOUT, free_port, wait_until

PROJECT = Path(__file__).resolve().parents[1]
K8S_INSTANCE = PROJECT / "orchestration" / "instance" / "k8s.yaml"
DEBIAN_PACKAGE = "postgresql"
SERVER_USERS = ("postgres", "nobody")


class PostgresNotInstalledError(RuntimeError):
    """The server binaries (`initdb`, `pg_ctl`) are not on this machine."""


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str

    @property
    def env(self) -> dict[str, str]:
        """The variables `k8s.yaml` reads its `postgres_db` settings from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.database,
        }

    def connect(self, database: str | None = None) -> Any:
        """A psycopg2 connection; the caller closes it."""
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            connect_timeout=30,
        )


def postgres_bindir() -> Path:
    """The folder holding `initdb` and `pg_ctl`: PATH, then `pg_config --bindir`, then Debian's layout."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        answer = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if answer.returncode == 0 and answer.stdout.strip():
            candidates.append(Path(answer.stdout.strip()))
    # Debian installs the server outside PATH, one folder per major version: newest first.
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        candidates.extend(sorted(debian.glob("*/bin"), key=_major_version, reverse=True))
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PostgresNotInstalledError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, in `pg_config --bindir` "
        f"or /usr/lib/postgresql/*/bin: install the Debian package `{DEBIAN_PACKAGE}` "
        f"(apt-get install {DEBIAN_PACKAGE}; `.ci/system-packages` does it in CI)"
    )


def _major_version(folder: Path) -> int:
    name = folder.parent.name
    return int(name) if name.isdigit() else -1


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: this process, or an unprivileged account when this process is root."""
    if os.geteuid() != 0:
        return None
    for name in SERVER_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(f"running as root and none of the users {SERVER_USERS} exists to run PostgreSQL")


def _run(command: list[str], owner: pwd.struct_passwd | None, cwd: Path) -> None:
    as_owner: dict[str, Any] = {}
    if owner is not None:
        as_owner = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    env = {**os.environ, "LC_ALL": "C", "HOME": str(cwd)}
    answer = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False, **as_owner
    )
    if answer.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({answer.returncode}):\n{answer.stdout}{answer.stderr}"
        )


def _wait_for_connections(server: PostgresServer, timeout: float) -> None:
    wait_until(
        lambda: server.connect("postgres").close(),
        lambda _: True,
        what=f"PostgreSQL on {server.host}:{server.port} to accept connections",
        timeout=timeout,
        interval=0.2,
        retry_on=(psycopg2.OperationalError,),
    )


@contextmanager
def local_postgres(database: str = "dagster", timeout: float = START_TIMEOUT) -> Iterator[PostgresServer]:
    """Start a PostgreSQL server with an empty `database`; stop it and delete its files on exit."""
    bindir = postgres_bindir()
    owner = _server_user()
    root = Path(tempfile.mkdtemp(prefix="local-postgres-"))
    data, log = root / "data", root / "server.log"
    server = PostgresServer("127.0.0.1", free_port(), "dagster", secrets.token_urlsafe(16), database)
    started = False
    try:
        try:
            _start(bindir, owner, root, server, timeout)
            started = True
            _create_database(server, timeout)
        except Exception as exc:
            if log.exists():
                exc.add_note(f"PostgreSQL server log:\n{log.read_text()[-4000:]}")
            raise
        yield server
    finally:
        try:
            if started or (data / "postmaster.pid").exists():
                _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], owner, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _start(
    bindir: Path, owner: pwd.struct_passwd | None, root: Path, server: PostgresServer, timeout: float
) -> None:
    """initdb with the server's password for TCP logins (none over a Unix socket), then pg_ctl start."""
    data = root / "data"
    password_file = root / "password"
    password_file.write_text(server.password)
    if owner is not None:
        for path in (root, password_file):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            server.user,
            f"--pwfile={password_file}",
            "--auth-local=reject",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ],
        owner,
        root,
    )
    password_file.unlink()
    # TCP on loopback only; no Unix socket, whose default folder may not exist or be writable.
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {server.port}\nunix_socket_directories = ''\n")
    log = root / "server.log"
    _run(
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(int(timeout)), "start"],
        owner,
        root,
    )


def _create_database(server: PostgresServer, timeout: float) -> None:
    _wait_for_connections(server, timeout)
    admin = server.connect("postgres")
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{server.database}"')
    finally:
        admin.close()


def k8s_storage() -> dict[str, Any]:
    """The `storage` section of the `k8s` profile's instance, exactly as deployed (settings from env)."""
    settings = yaml.safe_load(K8S_INSTANCE.read_text())
    return dict(settings["storage"])
