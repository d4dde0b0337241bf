"""``ranker serve --workers N``: N processes serving one port, so every core of a box serves.

Each worker is a whole ranker (its own event loop, list cache, Redis connections and flush loop)
listening on the same port with SO_REUSEPORT; the kernel spreads connections across them. The
supervisor, the process that was started, runs no app: it starts the workers, restarts one that
dies, and on SIGTERM or SIGINT passes SIGTERM on once and waits while each finishes its
requests and flushes its queue.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from ranker.app import create_app
from ranker.config import Settings
from ranker.logs import access_log_options, configure_logging

from . import process as server_process
from .embedded import die_with_parent

# The name its log lines have always carried (the module was ranker/workers.py).
log = logging.getLogger("ranker.workers")

STOP_TIMEOUT_S = 60.0
"""How long a worker may take to stop (finish requests, flush) before it is killed."""

MAX_START_FAILURES = 5
"""A worker that dies before it serves, this many times in a row, stops the service: it is
failing at start-up (a bad setting, a port it may not bind) and restarting it again will not
help. A worker that died while serving (killed, out of memory) is replaced however often."""


class PortInUse(RuntimeError):
    """Something already listens on the port ranker was told to use."""


def check_port_is_free(host: str, port: int) -> None:
    """Fail fast when something listens on the port. Workers bind with SO_REUSEPORT, which
    would otherwise let them quietly share the port with another ranker run by the same user.
    """
    for family, kind, proto, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, proto) as sock:
            # Connections of an earlier run in TIME_WAIT are no reason to refuse; a listener is.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def serve_workers(settings: Settings, workers: int) -> int:
    """Run ``workers`` worker processes until SIGTERM or SIGINT; the exit status to return.

    The caller has checked that the port is free (:func:`check_port_is_free`)."""
    context = multiprocessing.get_context("spawn")
    metrics_dir = Path(tempfile.mkdtemp(prefix="ranker-metrics-"))
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            # Kept installed until the workers are gone: a second SIGTERM or Ctrl-C must not
            # kill the supervisor (and, through their parent-death signal, interrupt the
            # workers' final flush). The stop timeout still bounds how long it takes.
            log.warning("already stopping; waiting for the workers to finish their flushes")
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    # slot -> (process, started at, true once it listens)
    running: dict[int, tuple[BaseProcess, float, ctypes.c_bool]] = {}
    start_failures = 0
    status = 0
    try:

        def start(slot: int) -> None:
            # A plain shared flag, with no lock: a worker killed while setting an Event (it
            # holds the Event's lock then) would leave the supervisor blocked reading it.
            serving = context.RawValue(ctypes.c_bool, False)
            process = context.Process(
                target=_worker_main,
                args=(settings, metrics_dir, serving),
                name=f"ranker-worker-{slot}",
            )
            process.start()
            running[slot] = (process, time.monotonic(), serving)
            log.info("worker %d started (pid %s)", slot, process.pid)

        for slot in range(workers):
            start(slot)
        while not stopping:
            wait([process.sentinel for process, _, _ in running.values()], timeout=0.5)
            for slot, (process, started, serving) in list(running.items()):
                if process.is_alive() or stopping:
                    continue
                served = serving.value
                log.error(
                    "worker %d (pid %s) exited with %s after %.1f s, %s",
                    slot,
                    process.pid,
                    process.exitcode,
                    time.monotonic() - started,
                    "while serving" if served else "before it served",
                )
                # Only start-up failures count: one that served can serve again once replaced.
                start_failures = 0 if served else start_failures + 1
                if start_failures >= MAX_START_FAILURES:
                    log.critical("workers keep failing at start-up; stopping")
                    stopping, status = True, 1
                    break
                start(slot)
    finally:
        try:
            stopping = True
            status = max(status, _stop_all([process for process, _, _ in running.values()]))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


def _stop_all(processes: list[BaseProcess]) -> int:
    for process in processes:
        if process.is_alive() and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):  # it ended since
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    status = 0
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.error(
                "worker pid %s did not stop in %.0f s; killing it", process.pid, STOP_TIMEOUT_S
            )
            process.kill()
            process.join()
            status = 1
        elif process.exitcode not in (0, -signal.SIGTERM):
            status = 1
    return status


def _worker_main(settings: Settings, metrics_dir: Path, serving: ctypes.c_bool) -> None:
    # Its own process group, so a terminal's Ctrl-C reaches only the supervisor, which passes
    # one SIGTERM on (a second signal would interrupt the final flush); and if the supervisor
    # dies without stopping it, even by SIGKILL, it gets SIGTERM.
    os.setpgrp()
    if sys.platform == "linux":
        die_with_parent()
    configure_logging(settings)

    def now_serving(_message: str) -> None:
        serving.value = True

    server_process.run(
        create_app(settings, metrics_dir=metrics_dir),
        settings,
        reuse_port=True,
        # Called once the port is bound and the app started: from now on this worker serves.
        announce=now_serving,
        **access_log_options(settings),
    )
    log.info("worker pid %d stopped", os.getpid())
