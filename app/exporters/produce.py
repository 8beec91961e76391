"""One entry point for every export kind: `produce` writes the files of an export request
into a folder and says what it wrote. Export jobs (page and API) and the command line both
call it, so an export is the same whoever asks for it.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from app.config import Settings
from app.exporters.odm_clinical import write_odm_snapshot
from app.exporters.odm_metadata import metadata_document
from app.exporters.odm_transactional import write_odm_transactional
from app.exporters.scope import ExportScope, Progress, ScopeKind, no_progress
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
    scope: ExportScope = field(default_factory=ExportScope)
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
    fields: dict[str, Any] = {"kind": scope_kind, "changed_since": changed_since}
    if scope_kind is ScopeKind.SITE:
        site = session.exec(select(Site).where(Site.number == (site_number or ""))).first()
        if site is None:
            raise BadExportRequest("site", f"no site numbered {site_number!r}")
        fields["site_id"] = site.id
    elif scope_kind is ScopeKind.COHORT:
        level, _, phase = (cohort or "").partition(":")
        if not level:
            raise BadExportRequest("cohort", "choose a dose cohort")
        fields.update(dose_level=level, phase=phase or None)
    elif scope_kind is ScopeKind.SUBJECT:
        key = (subject_key or "").strip()
        subject = session.exec(select(Subject).where(Subject.subject_key == key)).first()
        if subject is None:
            raise BadExportRequest("subject", f"no subject with screening number {key!r}")
        fields["subject_id"] = subject.id
    try:
        return ExportRequest(export_kind, ExportScope(**fields), frozenset(formats))
    except ValueError as error:
        raise BadExportRequest("formats", str(error)) from error


@dataclass(frozen=True)
class ExportedFile:
    """A file of an export, relative to its folder, with its row count where it has rows
    (item values for ODM, records for SDTM datasets)."""

    name: str
    rows: int | None


def produce(
    session: Session,
    study: Study,
    settings: Settings,
    request: ExportRequest,
    out_dir: Path,
    progress: Progress = no_progress,
) -> list[ExportedFile]:
    """Write the export's files into `out_dir` (which exists) and list them."""
    stem = study.info.oid.lower()
    if request.kind in (ExportKind.ODM_SNAPSHOT, ExportKind.ODM_TRANSACTIONAL):
        transactional = request.kind is ExportKind.ODM_TRANSACTIONAL
        name = f"{stem}-odm-{'transactional' if transactional else 'snapshot'}.xml"
        writer = write_odm_transactional if transactional else write_odm_snapshot
        counts = writer(session, study, out_dir / name, request.scope, progress)
        return [ExportedFile(name, counts.items)]
    return _sdtm(session, study, settings, request, out_dir, progress)


def _sdtm(
    session: Session,
    study: Study,
    settings: Settings,
    request: ExportRequest,
    out_dir: Path,
    progress: Progress,
) -> list[ExportedFile]:
    """SDTM datasets with define.xml, or define.xml alone; both ship the study's ODM metadata
    as the eCRF that Define-XML's collected origins point to."""
    # Imported here: the SDTM writers bring pandas, which serving pages does not need.
    from app.exporters.define import write_define
    from app.sdtm.build import write_sdtm
    from app.sdtm.spec import load_sdtm_specs

    specs = load_sdtm_specs(settings.exports_dir, study)
    define_only = request.kind is ExportKind.DEFINE
    # Define-XML states observed lengths, so it needs the datasets even when only it is kept.
    data_dir = out_dir / ".datasets" if define_only else out_dir
    data_dir.mkdir(exist_ok=True)
    formats = frozenset({"xpt"}) if define_only else request.formats
    datasets = write_sdtm(session, study, specs, data_dir, request.scope, formats, progress)
    crf = f"{study.info.oid.lower()}-odm-metadata.xml"
    created = utcnow()
    (out_dir / crf).write_bytes(
        metadata_document(study, file_oid=f"TRIALDESK.{study.info.oid}.CRF", created=created)
    )
    define_files = write_define(study, specs, datasets, out_dir, crf=crf, created=created)
    files: list[ExportedFile] = []
    if define_only:
        shutil.rmtree(data_dir)
    else:
        files = [
            ExportedFile(path.relative_to(out_dir).as_posix(), dataset.rows)
            for dataset in datasets
            for path in dataset.files.values()
        ]
    names = [crf, *(path.relative_to(out_dir).as_posix() for path in define_files)]
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
