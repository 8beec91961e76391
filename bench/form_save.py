"""Form-save benchmark: concurrent clients saving a ~40-item form through the JSON API
(type checks, ranges, derivations, show-if, audit records, optimistic lock), against a bare
FastAPI endpoint that inserts one row, both served by uvicorn on 127.0.0.1.

    python bench/form_save.py [--clients 16] [--seconds 10] [--databases sqlite postgresql]

Prints saves per second, p50 and p99 latency, and the ratio to the bare insert. Each client
saves its own subject's haematology panel (3 header items, 10 result rows of 4 entered items:
43 entered values, 10 derived range indicators), alternating two sets of values so that every
save changes values and writes audit records. Bounded: each phase stops after --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

REPO = Path(__file__).resolve().parents[1]
LOG = Path(tempfile.gettempdir()) / "trialdesk-bench-servers.log"
"""The servers' stderr: look here when a phase fails."""
sys.path.insert(0, str(REPO))

from app import audit, auth  # noqa: E402
from app.access import load_access  # noqa: E402
from app.crf import write  # noqa: E402
from app.crf.changes import NewSubject  # noqa: E402
from app.db import make_engine, unit_of_work, upgrade  # noqa: E402
from app.demo import load_demo  # noqa: E402
from app.models import UserAccount, utcnow  # noqa: E402
from app.studies import bind_studies  # noqa: E402
from app.study.loader import load_study  # noqa: E402
from bench import bare_app  # noqa: E402

TESTS = {  # test code: result, unit, normal range, and the step between the two value sets
    "WBC": (6.0, "10^9/L", "3.5", "9.5", 0.1), "NEUT": (3.5, "10^9/L", "1.8", "6.3", 0.1),
    "LYM": (1.8, "10^9/L", "1.1", "3.2", 0.1), "MONO": (0.4, "10^9/L", "0.1", "0.6", 0.01),
    "EOS": (0.1, "10^9/L", "0.02", "0.52", 0.01), "BASO": (0.02, "10^9/L", "0", "0.06", 0.01),
    "HGB": (135, "g/L", "115", "150", 1), "HCT": (0.4, "L/L", "0.35", "0.45", 0.01),
    "PLAT": (250, "10^9/L", "125", "350", 1), "RETI": (1.0, "%", "0.5", "1.5", 0.1),
}  # fmt: skip
"""Results within their ranges and units the edit checks accept: every save passes them."""
POSTGRES_ADMIN = os.environ.get(
    "TRIALDESK_TEST_POSTGRES_URL",
    "postgresql+psycopg://trialdesk:trialdesk@127.0.0.1:5432/postgres",
)


def panel(variant: int) -> dict[str, object]:
    rows = {
        str(n): {
            "LBORRES": f"{result + variant * step:g}", "LBORRESU": unit,
            "LBORNRLO": low, "LBORNRHI": high,
        }
        for n, (result, unit, low, high, step) in enumerate(TESTS.values(), start=1)
    }  # fmt: skip
    header = {"LBDAT": "2026-05-0" + str(1 + variant), "LBTIM": "08:30", "LBNAM": "Central lab"}
    return {"IG.LBHEM": {"1": header}, "IG.LBHEM.LB": rows}


SERVE_BARE = (
    "import sys; from app.serving import run; run('bench.bare_app:create', host='127.0.0.1', "
    "port=int(sys.argv[1]), workers=int(sys.argv[2]), log_level='warning')"
)
"""The bare app is served like TrialDesk (`trialdesk serve`), so both sides get the same server."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def prepare(url: str, clients: int) -> tuple[str, list[int]]:
    """Migrate, load demo accounts, register one subject per client; return a token and ids."""
    upgrade(url)
    engine = make_engine(url)
    (study,) = bind_studies(engine, [load_study(REPO / "forms")], now=utcnow()).by_id.values()
    load_demo(engine, study, subjects=0)
    with Session(engine, expire_on_commit=False) as session:
        user = session.exec(select(UserAccount).where(UserAccount.username == "coordinator")).one()
        author = write.Author(load_access(session, user, study.id), audit.Actor(user))
        with unit_of_work(session):
            ids = [
                write.apply(session, study, NewSubject(1), by=author, now=utcnow()).subject.id
                for _ in range(clients)
            ]
            _, secret = auth.create_api_token(session, user=user, name="bench", now=utcnow())
    bare_app.create_table(engine)
    engine.dispose()
    return secret, [i for i in ids if i is not None]


async def drive(
    clients: int,
    seconds: float,
    request: Callable[[httpx.AsyncClient, int], Awaitable[bool]],
    base: str,
) -> tuple[list[float], int]:
    """Run `clients` loops of `request` for `seconds`; return latencies (s) and failures."""
    latencies: list[float] = []
    failures = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def loop(index: int, client: httpx.AsyncClient) -> None:
        nonlocal failures
        while time.monotonic() < stop:
            start = time.perf_counter()
            try:
                ok = await request(client, index)
            except httpx.TransportError as error:  # a dropped connection counts as a failure
                print(f"  client {index}: {type(error).__name__}: {error}", file=sys.stderr)
                ok = False
            latencies.append(time.perf_counter() - start)
            failures += 0 if ok else 1

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(*(loop(i, client) for i in range(clients)))
    return latencies, failures


def summary(name: str, latencies: list[float], failures: int, seconds: float) -> float:
    rate = len(latencies) / seconds
    quantiles = statistics.quantiles(latencies, n=100)
    print(
        f"  {name:<10} {rate:8.1f} req/s   p50 {quantiles[49] * 1000:6.1f} ms   "
        f"p99 {quantiles[98] * 1000:6.1f} ms   failures {failures}"
    )
    return rate


def serve(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        env={**os.environ, **env},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=LOG.open("ab"),
    )


def run(database: str, clients: int, seconds: float, workers: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        if database == "sqlite":
            url = f"sqlite:///{folder}/bench.db"
            cleanup: Callable[[], None] = lambda: None  # noqa: E731
        else:
            name = f"trialdesk_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            url = make_url(POSTGRES_ADMIN).set(database=name).render_as_string(hide_password=False)

            def cleanup() -> None:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        secret, subjects = prepare(url, clients)
        env = {
            "TRIALDESK_DATABASE_URL": url,
            "TRIALDESK_STUDY_DIR": str(REPO / "forms"),
            "TRIALDESK_LOG_LEVEL": "WARNING",
        }
        port, bare_port = free_port(), free_port()
        if database == "sqlite":
            workers = 1  # SQLite has one writer: TrialDesk serves it from one process
        app = serve(
            [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", str(workers)],
            env,
        )
        bare = serve([sys.executable, "-c", SERVE_BARE, str(bare_port), str(workers)], env)
        try:
            wait_for(f"http://127.0.0.1:{port}/login")
            wait_for(f"http://127.0.0.1:{bare_port}/docs")
            versions = [0] * clients
            headers = {"Authorization": f"Bearer {secret}"}

            # Bodies are encoded once: the client should spend the machine's cores on as little
            # as the bare phase's client does.
            encoded = [json.dumps(panel(variant)).encode() for variant in (0, 1)]
            headers["content-type"] = "application/json"

            async def save(client: httpx.AsyncClient, index: int) -> bool:
                path = f"/api/v1/studies/ZM001/subjects/{subjects[index]}/events/SE.SCR/1/forms/F.LBHEM/1"
                version = versions[index]
                body = b'{"version": %d, "values": %s}' % (version, encoded[version % 2])
                response = await client.put(path, content=body, headers=headers)
                if response.status_code == 200:
                    versions[index] = response.json()["version"]
                return response.status_code == 200

            async def insert(client: httpx.AsyncClient, _index: int) -> bool:
                return (await client.post("/bare")).status_code == 200

            print(f"{database}: {clients} clients, {seconds:g} s per phase, {workers} worker(s)")
            bare_latencies, bare_failures = asyncio.run(
                drive(clients, seconds, insert, f"http://127.0.0.1:{bare_port}")
            )
            bare_rate = summary("bare", bare_latencies, bare_failures, seconds)
            form_latencies, form_failures = asyncio.run(
                drive(clients, seconds, save, f"http://127.0.0.1:{port}")
            )
            form_rate = summary("form save", form_latencies, form_failures, seconds)
            print(f"  ratio form/bare {form_rate / bare_rate:.2f}")
        finally:
            for process in (app, bare):
                process.terminate()
                process.wait(10)
            cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    options = parser.parse_args()
    for database in options.databases:
        run(database, options.clients, options.seconds, options.workers)


if __name__ == "__main__":
    main()
