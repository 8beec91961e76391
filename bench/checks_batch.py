"""Batch run of every edit check over a large demo study (default `trialdesk demo --subjects
500`, built once into the temporary folder, as bench/export.py does), printing the checks,
subjects, seconds, findings and peak memory. The run is measured twice, in fresh processes:
over one site's subjects and over all of them, so that memory growing with the number of
subjects would show (the batch holds one subject at a time). A dry run: nothing is written.

    python bench/checks_batch.py [--subjects 500]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app import audit  # noqa: E402
from app.checks.batch import run_batch  # noqa: E402
from app.db import make_engine  # noqa: E402
from app.models import utcnow  # noqa: E402
from app.studies import bind_studies  # noqa: E402
from app.study.loader import load_study  # noqa: E402
from bench.export import demo_database  # noqa: E402


def measure(url: str, site: str | None) -> dict[str, Any]:
    """One batch run in this process: its report's figures and the process's peak memory."""
    engine = make_engine(url)
    study = load_study(REPO / "forms")
    (bound,) = bind_studies(engine, [replace(study, sdtm_dir=None)], now=utcnow()).by_id.values()
    report = run_batch(
        engine, bound, site_number=site, dry_run=True, actor=audit.Actor(None, "bench")
    )
    engine.dispose()
    return {
        "checks": report.checks, "subjects": report.subjects,
        "seconds": round(report.seconds, 2), "findings": len(report.findings),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--site", help=argparse.SUPPRESS)
    parser.add_argument("--task", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:
        print(json.dumps(measure(args.database_url, args.site)))
        return
    url = demo_database(args.subjects)
    for site in ("01", None):
        command = [sys.executable, __file__, "--task", "--database-url", url]
        command += ["--site", site] if site else []
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(result.stderr)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        scope = f"site {site}" if site else "all sites"
        print(
            f"{scope:>9}: {figures['checks']} checks on {figures['subjects']} subjects in "
            f"{figures['seconds']} s, {figures['findings']} findings, peak {figures['peak_mb']} MB"
        )


if __name__ == "__main__":
    main()
