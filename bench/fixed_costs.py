"""Fixed costs a user waits for (issue 8, section 9): what each command pays before and
besides its work, measured as the README installs TrialDesk (editable, and with
PYTHONDONTWRITEBYTECODE=1 in this environment nothing of `app/` is compiled ahead: every start
compiles what it imports).

    python bench/fixed_costs.py [--compare OTHER_TREE] [--repeat 3] [--subjects 200]

Every figure is the median of `--repeat` runs, each in a new process (`python -m app`, which
runs what the `trialdesk` script runs) with the tree's `forms/` and `exports/`:
- study load: `load_study` in a process that has imported the loader (target < 0.5 s);
- CLI import: `import app.cli` (python -X importtime) and `trialdesk --help`, whole process;
- study check: `trialdesk study check`, whole process (target < 2 s);
- SDTM, one subject: `export sdtm --subject` with Define-XML, whole process (target < 3 s);
- Define-XML alone on the small and on the large demo database: must not grow with the
  number of subjects;
- first request: from starting `trialdesk serve` to the first answer of GET /login;
- login: POST /login over HTTP on the started server (target < 300 ms);
- first progress: seconds until an export (one subject's SDTM) and `trialdesk demo` first
  show something on a terminal (a pty), and how long they run (target < 1 s).

With `--compare OTHER_TREE` (e.g. a `git archive` of main unpacked in a folder) each figure
is measured for both trees side by side, in alternation, and printed with the ratio; the
machine's speed varies over a day, so only such pairs compare. The demo databases (20 and
`--subjects` subjects) are built once by this tree's `trialdesk demo` and reused; beyond the
demo's escalation story, as a volume demo (`bench.export.build_volume_demo`).

Measured on this 2-core machine with other work on it (load about 2), side by side, median
of 3 (before: main at 1a4206f unpacked with `git archive`; after: branch `costs`):

    figure                                  before     after   before/after
    study load (s)                           0.955     0.274      3.5x
    CLI import (s)                           1.146     0.079     14.5x
    trialdesk --help (s)                     1.297     0.207      6.3x
    study check (s)                          4.925     0.725      6.8x
    SDTM one subject + Define-XML (s)        6.553     4.194      1.6x
    Define-XML alone, 20 subjects (s)        6.982     4.809      1.5x
    Define-XML alone, 200 subjects (s)      14.869     3.844      3.9x
    serve to first answer (s)                3.147     2.296      1.4x
    first request itself (s)                 0.051     0.052      1.0x
    login over HTTP (s)                      0.138     0.135      1.0x
    export: first progress (s)               2.187     0.769      2.8x
    demo: first output (s)                   7.201     0.950      7.6x
    demo: whole run (s)                      7.576     6.168      1.2x

What was left of one subject's SDTM export was mostly CDISC's define2-1.xsl rendering
define.html (1.5-2 s for any scope). That was no floor: the stylesheet finds each definition
an OID names by scanning all definitions of its kind (545 where clauses, each looked up among
some 1,400 ItemDefs); run with those lookups indexed by xsl:key (app/exporters/define_html.py,
the same bytes) it takes about 0.1 s. Compiling the stylesheet (10 ms) and the Define-XML
schema (7 ms) and validating define.xml (20 ms) cost little. Then cel's REPL, which
`import cel` loaded, and the stored definition read again at every start went too. Side by
side with main at e830fcb, median of 3, on this machine at load 3-6 (other work on it):

    figure                                  before     after   before/after
    SDTM one subject + Define-XML (s)        5.092     3.206      1.6x
    Define-XML alone, 20 subjects (s)        4.896     2.287      2.1x
    Define-XML alone, 200 subjects (s)       5.019     2.291      2.2x

(the first commit alone); on a quieter moment one subject's SDTM export took 2.6-3.0 s. What
is left is mostly imports, which the GIL serialises with the work: pandas and pyreadstat for
XPT (0.6-0.8 s), sqlmodel and SQLAlchemy (0.3 s), alembic for the migration check (0.2 s),
then the eCRF's ODM metadata built with odmlib (0.2 s) and Define-XML's elements (0.1 s).
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
DEMO_PASSWORD = "Demo-2026-zm001"
SUBJECT = "01-003"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")
BUILD_VOLUME = "from bench.export import build_volume_demo; build_volume_demo"
LOAD_STUDY = (
    "import time; from pathlib import Path; from app.study.loader import load_study; "
    "t = time.perf_counter(); load_study(Path('forms')); print(time.perf_counter() - t)"
)


class Tree:
    """A source tree of TrialDesk, run with this interpreter and its own `app/`."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url

    def env(self, database_url: str | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(self.root),
            "TRIALDESK_DATABASE_URL": database_url or self.database_url,
            "TRIALDESK_LOG_LEVEL": "WARNING",
            "TERM": "xterm-256color",
            "COLUMNS": "100",
        }

    def run(self, *args: str, database_url: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, *args], cwd=self.root, env=self.env(database_url),
            capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{args} failed in {self.root}:\n{result.stderr[-2000:]}")
        return result.stdout

    def wall(self, *args: str, database_url: str | None = None) -> float:
        started = time.perf_counter()
        self.run(*args, database_url=database_url)
        return time.perf_counter() - started


def first_output(tree: Tree, args: list[str], database_url: str) -> tuple[float, float]:
    """Seconds until the command first shows text on a terminal, and until it exits."""
    master, slave = pty.openpty()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *args], cwd=tree.root, env=tree.env(database_url),
        stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    first = None
    while True:
        ready, _, _ = select.select([master], [], [], 0.05)
        if not ready:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closes with the process
            break
        if not data:
            break
        if first is None and ANSI.sub(b"", data).strip():
            first = time.perf_counter() - started
    os.close(master)
    if process.wait() != 0:
        raise RuntimeError(f"{args} failed in {tree.root}")
    total = time.perf_counter() - started
    return (total if first is None else first), total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(tree: Tree) -> tuple[float, float, float]:
    """Seconds from `trialdesk serve` to the first answer of GET /login, that request's own
    time, and the median time of a login (POST /login)."""
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=tree.root,
        env=tree.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = started + 120
            while True:
                asked = time.perf_counter()
                try:
                    response = client.get("/login")
                    break
                except httpx.TransportError:
                    if time.perf_counter() > deadline:
                        raise
                    time.sleep(0.02)
            answered = time.perf_counter()
            response.raise_for_status()
            form = {"username": "datamanager", "password": DEMO_PASSWORD}
            form["csrftoken"] = client.cookies["csrftoken"]
            logins = []
            for _ in range(5):
                before = time.perf_counter()
                assert client.post("/login", data=form).status_code == 303
                logins.append(time.perf_counter() - before)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return answered - started, answered - asked, statistics.median(logins)


def demo_database(tree: Tree, subjects: int) -> str:
    """A demo SQLite database, built once and reused (migrated): `trialdesk demo --subjects N`
    up to the demo's story, a volume demo beyond (`bench.export.build_volume_demo`)."""
    story = int(tree.run("-c", "from app.demo import SCENARIOS; print(len(SCENARIOS))"))
    volume = subjects > story
    name = f"trialdesk-fixed-costs-{subjects}{'-volume' if volume else ''}.db"
    path = Path(tempfile.gettempdir()) / name
    if not path.exists():
        partial = path.with_suffix(".partial.db")
        partial.unlink(missing_ok=True)
        url = f"sqlite:///{partial}"
        if volume:
            tree.run("-c", f"{BUILD_VOLUME}({url!r}, {subjects})", database_url=url)
        else:
            tree.run("-m", "app", "demo", "--subjects", str(subjects), database_url=url)
        partial.rename(path)
    else:  # built by an earlier version: bring it to this tree's migrations
        tree.run("-m", "app", "db", "upgrade", database_url=f"sqlite:///{path}")
    return f"sqlite:///{path}"


def figures(tree: Tree, large_url: str, scratch: Path) -> dict[str, float]:
    """One measurement of every figure for `tree`."""
    out = scratch / "out"
    served, first_request, login = serve(tree)
    importtime = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import app.cli"], cwd=tree.root,
        env=tree.env(), capture_output=True, text=True, check=True,
    ).stderr.strip().splitlines()[-1]  # fmt: skip
    demo_url = f"sqlite:///{scratch / 'demo.db'}"
    Path(scratch / "demo.db").unlink(missing_ok=True)
    demo_first, demo_total = first_output(tree, ["-m", "app", "demo"], demo_url)
    export = ["-m", "app", "export", "sdtm", "-o", str(out / "first"), "--subject", SUBJECT]
    export_first, _ = first_output(tree, export, tree.database_url)
    return {
        "study load (s)": float(tree.run("-c", LOAD_STUDY)),
        "CLI import (s)": int(importtime.split("|")[1]) / 1e6,
        "trialdesk --help (s)": tree.wall("-m", "app", "--help"),
        "study check (s)": tree.wall("-m", "app", "study", "check"),
        "SDTM one subject + Define-XML (s)": tree.wall(
            "-m", "app", "export", "sdtm", "-o", str(out / "sdtm"), "--subject", SUBJECT
        ),
        "Define-XML alone, 20 subjects (s)": tree.wall(
            "-m", "app", "export", "define", "-o", str(out / "define20")
        ),
        "Define-XML alone, large (s)": tree.wall(
            "-m",
            "app",
            "export",
            "define",
            "-o",
            str(out / "define-large"),
            database_url=large_url,
        ),
        "serve to first answer (s)": served,
        "first request itself (s)": first_request,
        "login over HTTP (s)": login,
        "export: first progress (s)": export_first,
        "demo: first output (s)": demo_first,
        "demo: whole run (s)": demo_total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", type=Path, help="another source tree, measured alongside")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--subjects", type=int, default=200, help="subjects of the large demo")
    args = parser.parse_args()
    here = Tree(REPO, "")
    small, large = demo_database(here, 20), demo_database(here, args.subjects)
    trees = {"this": Tree(REPO, small)}
    if args.compare:
        trees = {"other": Tree(args.compare.resolve(), small), **trees}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="trialdesk-fixed-costs-") as folder:
        for repeat in range(args.repeat):
            for name, tree in trees.items():  # alternating, so that both see the same machine
                scratch = Path(folder) / f"{name}-{repeat}"
                scratch.mkdir()
                runs[name].append(figures(tree, large, scratch))
    medians = {
        name: {key: statistics.median(run[key] for run in measured) for key in measured[0]}
        for name, measured in runs.items()
    }
    header = f"{'figure (median of ' + str(args.repeat) + ')':<38}"
    print(
        header + "".join(f"{name:>10}" for name in medians) + ("     ratio" if args.compare else "")
    )
    for key in medians["this"]:
        values = [medians[name][key] for name in medians]
        ratio = f"{values[0] / values[1]:9.1f}x" if args.compare and values[1] else ""
        print(f"{key:<38}" + "".join(f"  {value:8.3f}" for value in values) + ratio)
    print(f"(large demo database: {args.subjects} subjects; other = {args.compare})")


if __name__ == "__main__":
    main()
