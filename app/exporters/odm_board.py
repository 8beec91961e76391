"""The safety board's dose-escalation decisions in ODM 1.3.2: ClinicalData-level Annotations,
each with its electronic signature in ClinicalData's Signatures (ClinicalData holds
SubjectData*, AuditRecords*, Signatures*, Annotations*, in that order).

- A decision (`app.escalation.records.BoardDecisionRecord`) is an Annotation with ID `BD.<id>`:
  its Comment (SponsorOrSite "Sponsor") says what was decided (`describe`), the rationale, the
  reason for overriding the rules if the board did, what the rules recommended at the time and
  the minutes' reference; its Flags are the decision's kind (CL.BOARDDECISION) and each dose
  level it names (CL.DOSELEVEL), by the convention of `odm_common`.
- Its signature is a Signature with ID `BD.<id>.SIG` (ODM has no reference from an Annotation
  to a Signature of ClinicalData: the IDs pair them): UserRef the signer (a User of AdminData
  in any scope), LocationRef the board's Location (`LOC.BOARD`, LocationType Sponsor, added to
  AdminData: the board sits at no site), SignatureRef the SignatureDef of the meaning signed
  (`SD.BOARD.1`, `SD.BOARD.2`, ... one per distinct meaning in the file, in order of first
  use), DateTimeStamp the time signed.
- Scope: the decisions concern the whole study (which levels are open, a pause, the stop), so a
  whole-study or cohort export holds all of them, and a site's or one subject's export none: a
  site's export is its own subjects' casebooks, not the sponsor's deliberations. An
  incremental export holds the decisions signed after its moment.
- The snapshot's Annotations carry no TransactionType; the transactional export's are Inserts
  (a decision is never changed or removed; a later one supersedes it).
- The ODM import reads past them, as it reads past signatures: the log belongs to the system
  where the board's decisions were signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree
from sqlmodel import Session, col, select

from app.escalation.decisions import describe
from app.escalation.records import BoardDecisionRecord
from app.exporters.odm_common import ODM_NSMAP, AdminExtras, annotate, q, user_oid
from app.exporters.odm_metadata import (
    BOARD_DECISION_CODELIST,
    DOSE_LEVEL_CODELIST,
    metadata_version_oid,
)
from app.exporters.scope import ExportScope, ScopeKind
from app.study.loader import Study

BOARD_LOCATION_OID = "LOC.BOARD"
BOARD_SIGNATURE_OID = "SD.BOARD"
BOARD_LEGAL_REASON = (
    "Signed under 21 CFR Part 11: this electronic signature is the legally binding equivalent "
    "of the signer's handwritten signature."
)


@dataclass(frozen=True)
class BoardDecisions:
    """The decisions an export holds (none for a site's or a subject's scope)."""

    study: Study
    records: Sequence[BoardDecisionRecord]

    @property
    def meanings(self) -> list[str]:
        """The distinct meanings signed, in order of first use (SD.BOARD.1 is the first)."""
        return list(dict.fromkeys(record.meaning for record in self.records))

    def admin(self, signature_defs: Sequence[etree._Element]) -> AdminExtras:
        """AdminData for these decisions after the study's `signature_defs`: their signers,
        the board's Location and a SignatureDef per meaning (nothing without decisions)."""
        if not self.records:
            return AdminExtras(signature_defs=signature_defs)
        location = etree.Element(
            q("Location"), OID=BOARD_LOCATION_OID, Name="Safety review board",
            LocationType="Sponsor", nsmap=ODM_NSMAP,
        )  # fmt: skip
        etree.SubElement(
            location, q("MetaDataVersionRef"), StudyOID=self.study.info.oid,
            MetaDataVersionOID=metadata_version_oid(self.study),
            EffectiveDate=min(record.decided_on for record in self.records).isoformat(),
        )  # fmt: skip
        defs = []
        for number, meaning in enumerate(self.meanings, start=1):
            element = etree.Element(
                q("SignatureDef"), OID=f"{BOARD_SIGNATURE_OID}.{number}",
                Methodology="Electronic", nsmap=ODM_NSMAP,
            )  # fmt: skip
            etree.SubElement(element, q("Meaning")).text = meaning
            etree.SubElement(element, q("LegalReason")).text = BOARD_LEGAL_REASON
            defs.append(element)
        signers = frozenset(record.signer_id for record in self.records)
        return AdminExtras(signers, (location,), (*signature_defs, *defs))

    def write(self, xf: etree._IncrementalFileWriter, *, transactional: bool) -> None:
        """ClinicalData's Signatures and Annotations of the decisions (write them after the
        last SubjectData); nothing without decisions."""
        if not self.records:
            return
        definitions = {meaning: n for n, meaning in enumerate(self.meanings, start=1)}
        signatures = etree.Element(q("Signatures"), nsmap=ODM_NSMAP)
        annotations = etree.Element(q("Annotations"), nsmap=ODM_NSMAP)
        for record in self.records:
            signature = etree.SubElement(signatures, q("Signature"), ID=f"BD.{record.id}.SIG")
            etree.SubElement(signature, q("UserRef"), UserOID=user_oid(record.signer_id))
            etree.SubElement(signature, q("LocationRef"), LocationOID=BOARD_LOCATION_OID)
            definition = f"{BOARD_SIGNATURE_OID}.{definitions[record.meaning]}"
            etree.SubElement(signature, q("SignatureRef"), SignatureOID=definition)
            stamp = etree.SubElement(signature, q("DateTimeStamp"))
            stamp.text = record.signed_at.isoformat(timespec="seconds")
            flags = [(BOARD_DECISION_CODELIST, record.kind)]
            flags += [(DOSE_LEVEL_CODELIST, level) for level in record.level_codes]
            annotation = annotate(annotations, flags, decision_comment(record), "Sponsor")
            annotation.set("ID", f"BD.{record.id}")
            if transactional:
                annotation.set("TransactionType", "Insert")
        xf.write(signatures)
        xf.write(annotations)


def decision_comment(record: BoardDecisionRecord) -> str:
    """The Comment of a decision's Annotation: one line each for what was decided, why, the
    override and its reason, the rules' recommendation when it was recorded, the minutes."""
    recommended = record.engine_state + (
        f" at {record.engine_level}" if record.engine_level else ""
    )
    lines = [f"{describe(record)}.", f"Rationale: {record.rationale}"]
    if record.override_reason:
        lines.append(f"Overriding the rules: {record.override_reason}")
    lines.append(f"The rules recommended {recommended}: {record.engine_reason}")
    if record.minutes_reference:
        lines.append(f"Minutes: {record.minutes_reference}")
    return "\n".join(lines)


def board_decisions(session: Session, study: Study, scope: ExportScope) -> BoardDecisions:
    """The decisions an export of `scope` holds (module docstring), in the order recorded."""
    if scope.kind in (ScopeKind.SITE, ScopeKind.SUBJECT):
        return BoardDecisions(study, ())
    statement = select(BoardDecisionRecord).where(BoardDecisionRecord.study_id == scope.study_id)
    if scope.changed_since is not None:
        statement = statement.where(col(BoardDecisionRecord.signed_at) > scope.changed_since)
    records = session.exec(statement.order_by(col(BoardDecisionRecord.id))).all()
    return BoardDecisions(study, records)
