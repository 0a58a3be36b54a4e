"""The local stack's PostgreSQL server: finding the server binaries, creating the
cluster once (initdb) and the `products` database, and the server's command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg

PASSWORD = "products-local"


def pg_bindir() -> Path:
    """The directory of the newest installed initdb/postgres/pg_dump; RuntimeError if none."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: install Debian's postgresql package (make deps does)")


def server_user() -> str | None:
    """The user to run the server as: PostgreSQL refuses to run as root, and CI runs as root."""
    return "postgres" if os.geteuid() == 0 else None


def prepare_cluster(root: Path, pgdata: Path, run_dir: Path, user: str | None) -> None:
    """Creates the cluster in *pgdata* on first use (user `products`, scram-sha-256,
    UTF-8) and the socket directory *run_dir*, owned by *user* when given."""
    bindir = pg_bindir()
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        pwfile = root / "pgpass.tmp"
        pwfile.write_text(f"{PASSWORD}\n")
        if user:
            shutil.chown(pgdata, user)
            shutil.chown(run_dir, user)
            shutil.chown(pwfile, user)
        cmd = [str(bindir / "initdb"), "-D", str(pgdata), "-U", "products", "--pwfile", str(pwfile),
               "-A", "scram-sha-256", "-E", "UTF8", "--locale", "C.UTF-8"]
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)
        pwfile.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    if user:
        shutil.chown(run_dir, user)


def server_argv(pgdata: Path, port: int, run_dir: Path) -> list[str]:
    """The postgres command line: loopback only, fsync on, room for the tests' connections."""
    return [str(pg_bindir() / "postgres"), "-D", str(pgdata), "-p", str(port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={run_dir}",
            "-c", "fsync=on", "-c", "max_connections=200"]


def maintenance_url(database_url: str) -> str:
    """The same server's `postgres` database, which exists before `products` does."""
    return database_url.replace("/products?", "/postgres?")


def accepts_connections(database_url: str) -> bool:
    with psycopg.connect(maintenance_url(database_url), connect_timeout=2):
        return True


def ensure_database(database_url: str) -> None:
    """Creates the `products` database unless it exists."""
    with psycopg.connect(maintenance_url(database_url), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'products'").fetchone():
            conn.execute("CREATE DATABASE products")
