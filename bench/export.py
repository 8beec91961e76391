"""Export benchmark on a large demo study (default 1000 subjects: about a million item values
with their audit records).

    python bench/export.py [--database-url URL] [--subjects 1000]

Without --database-url it builds (once, then reuses) a SQLite demo database in the temporary
folder, for volume: the demo's scenarios cycled through on the study without its escalation
casebook (`app.demo_escalation.volume_study`: no escalation gates, no board decisions; the
3+3 holds the demo's story only). Each measured task runs in its own Python process, which reports its time and its
peak resident memory:
- `odm`: TrialDesk's ODM 1.3.2 snapshot export (metadata, AdminData, ClinicalData with the
  latest AuditRecord of each item) of the whole study, read from the database while written;
- `bare`: a bare `lxml.etree.xmlfile` writer producing the same document from rows already in
  memory (loading them is not timed; their memory counts, as it must);
- `sdtm`: the full SDTM export, every domain, as XPT and Dataset-JSON (with Define-XML).
Prints seconds, peak memory, the ODM/bare ratio (target <= 1.5), and whether the targets hold
(ODM peak memory < 200 MB, SDTM < 60 s).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lxml import etree  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from app.db import make_engine, upgrade  # noqa: E402
from app.demo import load_demo  # noqa: E402
from app.demo_escalation import volume_study  # noqa: E402
from app.exporters.odm_clinical import write_odm_snapshot  # noqa: E402
from app.exporters.odm_common import ODM_NS, q  # noqa: E402
from app.exporters.odm_metadata import metadata_version_oid, study_element  # noqa: E402
from app.exporters.produce import ExportKind, ExportRequest, produce  # noqa: E402
from app.exporters.scope import ExportScope  # noqa: E402
from app.models import utcnow  # noqa: E402
from app.studies import bind_studies  # noqa: E402
from app.study.loader import load_study  # noqa: E402

STUDY = replace(load_study(REPO / "forms"), sdtm_dir=REPO / "exports", db_id=1, version=1)
VOLUME_STUDY = volume_study(STUDY)
"""ZM001 as `demo_database` binds it (the only study of the database)."""


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def task_odm(url: str, out: Path) -> dict[str, Any]:
    engine = make_engine(url, reader=True)
    with Session(engine) as session:
        started = time.perf_counter()
        counts = write_odm_snapshot(session, STUDY, out)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "items": counts.items, "bytes": out.stat().st_size}


CLINICAL_ROWS = """
SELECT s.subject_key, site.oid, e.event_oid, e.repeat_key, f.form_oid, f.repeat_key,
       g.item_group_oid, g.repeat_key, i.item_oid, i.value,
       a.user_id, a.occurred_at, a.reason, a.source
FROM subject s JOIN site ON site.id = s.site_id
JOIN study_event_data e ON e.subject_id = s.id
JOIN form_data f ON f.study_event_id = e.id
JOIN item_group_data g ON g.form_data_id = f.id
JOIN item_data i ON i.item_group_data_id = g.id
LEFT JOIN (
    SELECT subject_id, event_oid, event_repeat, form_oid, form_repeat, item_group_oid,
           group_repeat, item_oid, max(id) AS id
    FROM audit_record WHERE item_oid IS NOT NULL
    GROUP BY subject_id, event_oid, event_repeat, form_oid, form_repeat, item_group_oid,
             group_repeat, item_oid
) latest ON latest.subject_id = s.id AND latest.event_oid = e.event_oid
    AND latest.event_repeat = e.repeat_key AND latest.form_oid = f.form_oid
    AND latest.form_repeat = f.repeat_key AND latest.item_group_oid = g.item_group_oid
    AND latest.group_repeat = g.repeat_key AND latest.item_oid = i.item_oid
LEFT JOIN audit_record a ON a.id = latest.id
WHERE i.value IS NOT NULL
ORDER BY s.subject_key, e.id, f.id, g.item_group_oid, g.repeat_key, i.id
"""


def task_bare(url: str, out: Path) -> dict[str, Any]:
    """The same ClinicalData with audit records, written from rows already in memory."""
    engine = make_engine(url, reader=True)
    with engine.connect() as connection:
        rows = list(connection.execute(text(CLINICAL_ROWS)))
    started = time.perf_counter()
    with etree.xmlfile(str(out), encoding="UTF-8") as xf:
        xf.write_declaration()
        attributes = {"FileType": "Snapshot", "FileOID": "BARE", "ODMVersion": "1.3.2",
                      "CreationDateTime": "2026-11-25T00:00:00"}  # fmt: skip
        with xf.element(q("ODM"), attributes, nsmap={None: ODM_NS}):
            xf.write(study_element(STUDY))
            clinical = {
                "StudyOID": STUDY.info.oid,
                "MetaDataVersionOID": metadata_version_oid(STUDY),
            }
            with xf.element(q("ClinicalData"), clinical):
                _write_bare_subjects(xf, rows)
    return {"seconds": time.perf_counter() - started, "items": len(rows)}


def _write_bare_subjects(xf: Any, rows: list[Any]) -> None:
    subject_el: Any = None
    keys: tuple[Any, ...] = ()
    event_el = form_el = group_el = None
    for row in rows:
        (subject, site, event, event_rep, form, form_rep, group, group_rep, item, value,
         user, at, reason, source) = row  # fmt: skip
        if not keys or keys[0] != subject:
            if subject_el is not None:
                xf.write(subject_el)
            subject_el = etree.Element(q("SubjectData"), SubjectKey=subject)
            etree.SubElement(subject_el, q("SiteRef"), LocationOID=site)
            keys = ()
        if keys[:3] != (subject, event, event_rep):
            event_el = etree.SubElement(subject_el, q("StudyEventData"), StudyEventOID=event)
        if keys[:5] != (subject, event, event_rep, form, form_rep):
            form_el = etree.SubElement(event_el, q("FormData"), FormOID=form)
        if keys[:7] != (subject, event, event_rep, form, form_rep, group, group_rep):
            group_el = etree.SubElement(form_el, q("ItemGroupData"), ItemGroupOID=group)
            group_el.set("ItemGroupRepeatKey", str(group_rep))
        keys = (subject, event, event_rep, form, form_rep, group, group_rep)
        item_el = etree.SubElement(group_el, q("ItemData"), ItemOID=item, Value=value)
        if at is not None:
            record = etree.SubElement(item_el, q("AuditRecord"))
            etree.SubElement(record, q("UserRef"), UserOID=f"USR.{user}")
            etree.SubElement(record, q("LocationRef"), LocationOID=site)
            etree.SubElement(record, q("DateTimeStamp")).text = str(at)
            if reason:
                etree.SubElement(record, q("ReasonForChange")).text = reason
            etree.SubElement(record, q("SourceID")).text = source
    if subject_el is not None:
        xf.write(subject_el)


def task_sdtm(url: str, out: Path) -> dict[str, Any]:
    engine = make_engine(url, reader=True)
    out.mkdir(parents=True, exist_ok=True)
    scope = ExportScope(study_id=STUDY.id)
    request = ExportRequest(ExportKind.SDTM, scope, formats=frozenset({"xpt", "json"}))
    with Session(engine) as session:
        started = time.perf_counter()
        files = produce(session, STUDY, request, out)
        seconds = time.perf_counter() - started
    rows = sum(f.rows or 0 for f in files if f.name.endswith(".xpt"))
    return {"seconds": seconds, "files": len(files), "rows": rows}


TASKS: dict[str, Callable[[str, Path], dict[str, Any]]] = {
    "odm": task_odm,
    "bare": task_bare,
    "sdtm": task_sdtm,
}


def run_task(name: str, url: str, out: Path) -> dict[str, Any]:
    """Run one task in a fresh process, so that its peak memory is its own."""
    command = [sys.executable, __file__, "--task", name, "--database-url", url, "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"task {name} failed:\n{result.stderr}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def demo_database(subjects: int) -> str:
    """A volume demo database of `subjects` subjects in the temporary folder, built once per
    definition (the digest of the study it was built on is in the `ready` marker: a changed
    definition rebuilds it)."""
    folder = Path(tempfile.gettempdir()) / f"trialdesk-bench-export-{subjects}"
    folder.mkdir(exist_ok=True)
    url = f"sqlite:///{folder / 'trialdesk.db'}"
    ready = folder / "ready"
    if not ready.exists() or ready.read_text() != VOLUME_STUDY.digest:
        print(f"Building a demo study of {subjects} subjects in {folder} (once)...", flush=True)
        for stale in folder.glob("trialdesk.db*"):  # with its -wal and -shm files
            stale.unlink()
        build_volume_demo(url, subjects)
        ready.write_text(VOLUME_STUDY.digest)
    return url


def build_volume_demo(url: str, subjects: int) -> None:
    """Migrate the database at `url`, release ZM001 in it as served, and load a demo of
    `subjects` subjects for volume (module docstring)."""
    upgrade(url)
    engine = make_engine(url)
    bind_studies(engine, [replace(STUDY, db_id=None, version=0)], now=utcnow())
    load_demo(engine, VOLUME_STUDY, subjects=subjects)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="a database loaded with `trialdesk demo`")
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--task", choices=TASKS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:
        figures = TASKS[args.task](args.database_url, args.out)
        print(json.dumps({**figures, "peak_mb": peak_mb()}))
        return
    url = args.database_url or demo_database(args.subjects)
    engine = make_engine(url)
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM item_data")).scalar_one()
        audits = connection.execute(text("SELECT count(*) FROM audit_record")).scalar_one()
    engine.dispose()
    print(f"Database: {make_engine(url).url!r}: {count} item values, {audits} audit records")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        odm = run_task("odm", url, out / "odm.xml")
        bare = run_task("bare", url, out / "bare.xml")
        sdtm = run_task("sdtm", url, out / "sdtm")
    ratio = odm["seconds"] / bare["seconds"]
    print(f"ODM snapshot export: {odm['seconds']:7.1f} s  peak {odm['peak_mb']:6.0f} MB  "
          f"{odm['items']} ItemData, {odm['bytes'] / 1e6:.0f} MB")  # fmt: skip
    print(f"bare lxml writer:    {bare['seconds']:7.1f} s  peak {bare['peak_mb']:6.0f} MB  "
          f"{bare['items']} ItemData (rows loaded before timing)")  # fmt: skip
    print(f"ratio ODM / bare:    {ratio:7.2f}   (target <= 1.5)")
    print(f"SDTM (XPT + Dataset-JSON, all domains, Define-XML): {sdtm['seconds']:.1f} s, "
          f"peak {sdtm['peak_mb']:.0f} MB, {sdtm['rows']} records in {sdtm['files']} files "
          "(target < 60 s)")  # fmt: skip
    print(f"targets: ratio {'met' if ratio <= 1.5 else 'MISSED'}, "
          f"ODM memory {'met' if odm['peak_mb'] < 200 else 'MISSED'}, "
          f"SDTM time {'met' if sdtm['seconds'] < 60 else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
