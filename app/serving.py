"""Running an ASGI app under uvicorn in one process, or in several that share the load.

uvicorn's own `--workers` mode binds one listening socket and shares it: the worker that is
awake accepts a burst of new connections, so keep-alive clients (browsers, a reverse proxy's
pool, bench/form_save.py's 16 clients) can all end up on one worker while the others idle.
Here each worker binds its own socket to the address with SO_REUSEPORT, and the kernel spreads
new connections across the workers (Linux hashes each connection to one socket).

uvicorn is told not to configure logging (`log_config=None`): its loggers propagate to the one
configuration of `app.logs`, which the app factory applies in each worker. Its access log is
off: it would write query strings and client addresses; `app.web.tracing` writes ours.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

logger = logging.getLogger(__name__)

RESTART_PAUSE = 1.0
"""Seconds between a worker's unexpected exit and its replacement (no tight crash loop)."""


def run(app: str, *, host: str, port: int, workers: int = 1, log_level: str = "info") -> None:
    """Serve the app factory `app` ("module:function") until SIGINT or SIGTERM.

    With several workers, each is a process with its own listening socket; a worker that dies
    is replaced. Where SO_REUSEPORT is missing, uvicorn's shared-socket workers are used.
    """
    if workers == 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, **_logging(log_level))
        return
    _check_address(host, port)
    _supervise(app, host, port, workers, log_level)


def _logging(log_level: str) -> dict[str, Any]:
    """uvicorn's logging options (see the module's docstring)."""
    return {"log_config": None, "log_level": log_level, "access_log": False}


def _listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) in the address's SO_REUSEPORT group."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _check_address(host: str, port: int) -> None:
    """Fail in the parent, with the system's message, when the address cannot be bound."""
    if port == 0:
        raise ValueError("several workers need a fixed port: each binds it")
    _listening_socket(host, port).close()


def _worker(app: str, host: str, port: int, log_level: str) -> None:
    """One worker process: bind its own socket and serve until told to stop."""
    config = uvicorn.Config(app, factory=True, host=host, port=port, **_logging(log_level))
    uvicorn.Server(config).run(sockets=[_listening_socket(host, port)])


def _supervise(app: str, host: str, port: int, workers: int, log_level: str) -> None:
    # Spawned, not forked: a worker starts from a clean interpreter, as under uvicorn.
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(_signal: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(app, host, port, log_level))
        process.start()
        return process

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start() for _ in range(workers)]
    try:
        while not stopping:
            time.sleep(0.2)
            for index, process in enumerate(processes):
                if process.is_alive() or stopping:
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    raise SystemExit(f"a worker could not start (exit code {STARTUP_FAILURE})")
                logger.error(
                    "worker %s exited with code %s; starting another", process.pid, process.exitcode
                )
                time.sleep(RESTART_PAUSE)
                processes[index] = start()
    finally:
        for process in processes:
            process.terminate()  # SIGTERM: uvicorn finishes open requests, then exits
        for process in processes:
            process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
