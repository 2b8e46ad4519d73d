"""Postgres advisory locks for a work folder whose Dagster instance keeps its state in Postgres.

Runs on several machines (Kubernetes jobs, an object-store work folder) share the salt, shard plans,
the path map and the dedup index; a file lock serializes one machine only. When the work folder's
instance configuration (`DIR/dagster/dagster.yaml`) names Postgres storage, `Workdir.lock` takes a
session-level advisory lock on that server instead, keyed by the work folder and the lock's name.
Reading the YAML here needs no Dagster import: `{env: NAME}` values are resolved from the environment.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Self

import yaml


def _value(v):
    if isinstance(v, dict) and set(v) == {"env"}:
        value = os.environ.get(v["env"])
        if value is None:
            raise KeyError(f"environment variable {v['env']} (named by the instance configuration) is not set")
        return value
    return v


def unset_variables(config, environ=None) -> list[str]:
    """The `{env: NAME}` values of an instance configuration whose variable is not set (in `environ`,
    default the process's environment; `{}` lists every variable the configuration names)."""
    environ = os.environ if environ is None else environ
    if isinstance(config, dict):
        if set(config) == {"env"}:
            return [] if config["env"] in environ else [config["env"]]
        return [name for v in config.values() for name in unset_variables(v, environ)]
    if isinstance(config, list):
        return [name for v in config for name in unset_variables(v, environ)]
    return []


def postgres_params(instance_yaml: Path) -> dict | None:
    """psycopg2 connection arguments from an instance configuration with Postgres storage, else None."""
    if not instance_yaml.exists():
        return None
    config = yaml.safe_load(instance_yaml.read_text()) or {}
    pg = (config.get("storage") or {}).get("postgres") or (config.get("run_storage") or {}).get("config") or {}
    if url := _value(pg.get("postgres_url")) if pg.get("postgres_url") else None:
        return {"dsn": url}
    db = pg.get("postgres_db")
    if not isinstance(db, dict):
        return None
    return {"user": _value(db.get("username")), "password": _value(db.get("password")), "host": _value(db.get("hostname")),
            "dbname": _value(db.get("db_name")), "port": int(_value(db.get("port", 5432)))}


def lock_key(scope: str, name: str) -> int:
    """A signed 64-bit key for pg_advisory_lock, the same on every machine for one work folder and name."""
    return int.from_bytes(hashlib.sha256(f"{scope}\0{name}".encode()).digest()[:8], "big", signed=True)


class AdvisoryLock:
    """`with lock:` holds a Postgres session-level advisory lock (re-entrant in one process, as FileLock is)."""

    def __init__(self, params: dict, scope: str, name: str):
        self.params, self.key, self.depth, self.conn = params, lock_key(scope, name), 0, None

    def __enter__(self) -> Self:
        if self.depth == 0:
            import psycopg2

            self.conn = psycopg2.connect(**self.params, connect_timeout=30)
            self.conn.autocommit = True
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (self.key,))
        self.depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self.depth -= 1
        if self.depth == 0:
            try:
                with self.conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            finally:
                self.conn.close()
                self.conn = None
