"""One entry point for every export kind: `produce` writes the files of an export request
into a folder and says what it wrote. Export jobs (page and API) and the command line both
call it, so an export is the same whoever asks for it.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from app.exporters.odm_clinical import write_odm_snapshot
from app.exporters.odm_transactional import write_odm_transactional
from app.exporters.scope import (
    DATASETS,
    DEFINE_XML,
    SUBJECTS,
    ExportScope,
    Phases,
    ScopeKind,
    no_phases,
)
from app.models import Site, Subject, utcnow
from app.study.loader import Study


class ExportKind(StrEnum):
    ODM_SNAPSHOT = "odm_snapshot"
    ODM_TRANSACTIONAL = "odm_transactional"
    SDTM = "sdtm"
    DEFINE = "define"

    @property
    def description(self) -> str:
        return KIND_DESCRIPTIONS[self]


KIND_DESCRIPTIONS = {
    ExportKind.ODM_SNAPSHOT: "ODM 1.3.2 snapshot (current data, latest audit record per item)",
    ExportKind.ODM_TRANSACTIONAL: "ODM 1.3.2 transactional (full audit history)",
    ExportKind.SDTM: "SDTM datasets with Define-XML 2.1",
    ExportKind.DEFINE: "Define-XML 2.1 only",
}

SDTM_FORMATS = ("xpt", "json", "csv")
"""SAS XPORT v5, CDISC Dataset-JSON 1.1, CSV."""


@dataclass(frozen=True)
class ExportRequest:
    """What to export: the kind, the subjects it covers, and for SDTM the file formats."""

    kind: ExportKind
    scope: ExportScope
    formats: frozenset[str] = frozenset(SDTM_FORMATS)

    def __post_init__(self) -> None:
        unknown = sorted(self.formats - set(SDTM_FORMATS))
        if unknown:
            raise ValueError(
                f"unknown format {', '.join(unknown)}; formats: {', '.join(SDTM_FORMATS)}"
            )
        if self.kind is ExportKind.SDTM and not self.formats:
            raise ValueError("choose at least one SDTM file format")


class BadExportRequest(ValueError):
    """A field of an export request is wrong; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def export_request(
    session: Session,
    study: Study,
    *,
    kind: str,
    formats: list[str],
    scope: str,
    site_number: str | None = None,
    cohort: str | None = None,
    subject_key: str | None = None,
    changed_since: datetime | None = None,
) -> ExportRequest:
    """An ExportRequest from the words users send (site number, "DL2" or "DL2:ESCALATION",
    screening number); raises BadExportRequest naming the field that is wrong."""
    try:
        export_kind = ExportKind(kind)
    except ValueError as error:
        raise BadExportRequest("kind", f"unknown export kind {kind!r}") from error
    try:
        scope_kind = ScopeKind(scope)
    except ValueError as error:
        raise BadExportRequest("scope", f"unknown scope {scope!r}") from error
    fields: dict[str, Any] = {
        "study_id": study.id,
        "kind": scope_kind,
        "changed_since": changed_since,
    }
    if scope_kind is ScopeKind.SITE:
        site = session.exec(
            select(Site).where(Site.study_id == study.id, Site.number == (site_number or ""))
        ).first()
        if site is None:
            raise BadExportRequest("site", f"no site numbered {site_number!r}")
        fields["site_id"] = site.id
    elif scope_kind is ScopeKind.COHORT:
        level, phase = _cohort(study, cohort or "")
        fields.update(dose_level=level, phase=phase)
    elif scope_kind is ScopeKind.SUBJECT:
        key = (subject_key or "").strip()
        subject = session.exec(
            select(Subject).where(Subject.study_id == study.id, Subject.subject_key == key)
        ).first()
        if subject is None:
            raise BadExportRequest("subject", f"no subject with screening number {key!r}")
        fields["subject_id"] = subject.id
    try:
        return ExportRequest(export_kind, ExportScope(**fields), frozenset(formats))
    except ValueError as error:
        raise BadExportRequest("formats", str(error)) from error


def _cohort(study: Study, text: str) -> tuple[str, str | None]:
    """Dose level and phase of "DL2" or "DL2:ESCALATION", as the study codes them (exactly:
    codes are data). An unknown one is refused naming the valid ones: it would select nobody,
    and an empty export would pass for a real one."""
    level, colon, phase = text.strip().partition(":")
    levels = [dose.code for dose in study.info.dose_levels]
    phases = [p.code for p in study.info.phases]
    if level not in levels or (colon and phase not in phases):
        given = f"no dose cohort {text!r}; " if text.strip() else ""
        raise BadExportRequest(
            "cohort",
            f"{given}dose cohorts are {', '.join(levels)}, each optionally with a phase: "
            f"{' or '.join(':' + p for p in phases)} (e.g. {levels[0]}:{phases[0]})",
        )
    return level, phase or None


@dataclass(frozen=True)
class ExportedFile:
    """A file of an export, relative to its folder, with its row count where it has rows
    (item values for ODM, records for SDTM datasets)."""

    name: str
    rows: int | None


def produce(
    session: Session,
    study: Study,
    request: ExportRequest,
    out_dir: Path,
    phases: Phases = no_phases,
) -> list[ExportedFile]:
    """Write the export's files into `out_dir` (which exists) and list them, telling `phases`
    how the work advances: SUBJECTS read, SDTM DATASETS written, DEFINE_XML steps done."""
    stem = study.info.oid.lower()
    if request.kind in (ExportKind.ODM_SNAPSHOT, ExportKind.ODM_TRANSACTIONAL):
        transactional = request.kind is ExportKind.ODM_TRANSACTIONAL
        name = f"{stem}-odm-{'transactional' if transactional else 'snapshot'}.xml"
        writer = write_odm_transactional if transactional else write_odm_snapshot
        counts = writer(session, study, out_dir / name, request.scope, phases(SUBJECTS))
        return [ExportedFile(name, counts.items)]
    return _sdtm(session, study, request, out_dir, phases)


def _sdtm(
    session: Session,
    study: Study,
    request: ExportRequest,
    out_dir: Path,
    phases: Phases,
) -> list[ExportedFile]:
    """SDTM datasets with define.xml, or define.xml alone; both ship the annotated CRF
    (acrf.pdf, which def:AnnotatedCRF and the collected origins point to, by page) and the
    blank CRF (blankcrf.pdf), laid out from the definition and the mappings. Define-XML alone
    describes the datasets from the definition (`planned_datasets`): it reads no subject's
    data.

    Define-XML and define.html (CDISC's XSLT with its lookups indexed, about 0.1 s) are made
    in a thread beside the rest: lxml runs XSLT without the GIL. Define-XML is described from the tables in memory while
    their files are written, except when only XPT is written (its values read back can
    differ: XPT drops trailing blanks), when it waits for the files."""
    # Imported here: the SDTM writers bring pandas, which serving pages does not need.
    from app.exporters.crf_annotations import annotate
    from app.exporters.crf_pdf import ACRF_PDF, write_crfs
    from app.exporters.define import planned_datasets, write_define
    from app.sdtm.build import build_tables, last_modified
    from app.sdtm.spec import load_sdtm_specs
    from app.sdtm.writers import check_xport, to_be_written, write_tables

    if study.sdtm_dir is None:
        raise BadExportRequest("kind", f"{study.info.oid} has no SDTM mappings configured")
    specs = load_sdtm_specs(study.sdtm_dir, study)
    sdtm = request.kind is ExportKind.SDTM
    if sdtm:
        tables = build_tables(session, study, specs, request.scope, phases(SUBJECTS))
        check_xport(tables, request.formats)  # before any file, define.xml included
        datasets = [to_be_written(table, out_dir, request.formats) for table in tables]
    else:
        tables, datasets = [], planned_datasets(study, specs, out_dir)
    created = utcnow()
    steps = phases(DEFINE_XML)
    in_memory = {table.name: table for table in tables} if request.formats - {"xpt"} else None

    def define() -> list[Path]:
        steps(0, 2)
        crf_pages = crfs.result()[2].pages
        paths = write_define(
            study,
            specs,
            datasets,
            out_dir,
            crf=ACRF_PDF,
            crf_pages=crf_pages,
            created=created,
            tables=in_memory,
        )
        steps(1, 2)
        return paths

    with ThreadPoolExecutor(max_workers=2) as pool:
        crfs = pool.submit(write_crfs, study, annotate(study, specs), out_dir, created)
        described = pool.submit(define) if in_memory is not None or not sdtm else None
        if sdtm:
            modified = last_modified(session)
            write_tables(
                tables, study, out_dir, request.formats, modified, phases(DATASETS), checked=True
            )
        define_files = (described or pool.submit(define)).result()
    steps(2, 2)
    files = [
        ExportedFile(path.relative_to(out_dir).as_posix(), dataset.rows)
        for dataset in datasets
        if sdtm
        for path in dataset.files.values()
    ]
    crf_files = crfs.result()[:2]
    names = [path.relative_to(out_dir).as_posix() for path in (*crf_files, *define_files)]
    return files + [ExportedFile(name, None) for name in names]


def file_manifest(out_dir: Path, files: list[ExportedFile]) -> list[dict[str, Any]]:
    """Each file's name, rows, size and SHA-256, as the manifest that travels with an export."""
    entries = []
    for exported in files:
        path = out_dir / exported.name
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        entries.append({
            "name": exported.name,
            "rows": exported.rows,
            "bytes": path.stat().st_size,
            "sha256": digest.hexdigest(),
        })  # fmt: skip
    return entries
