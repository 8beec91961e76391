"""Electronic signatures in ODM 1.3.2: a signature is a native `Signature` of the
SubjectData (the casebook) or FormData (a form) it signs, with UserRef, LocationRef (the
subject's site), SignatureRef and DateTimeStamp; AdminData holds a `SignatureDef` per
meaning the study defines (Methodology Electronic, Meaning, LegalReason).

The snapshot holds the signature in force of each element (ODM allows one): a broken
signature no longer attests the data. The transactional export holds every signing in the
order signed (`write_signature_history`). The ODM import does not restore signatures: a
signature is the signer's act in the system that holds the data, and is given again there.
"""

from __future__ import annotations

from datetime import datetime

from lxml import etree
from sqlmodel import Session, col, select

from app.crf.changes import FormRef
from app.exporters.odm_common import ODM_NSMAP, RepeatKeys, Sites, q, user_oid
from app.exporters.odm_review import context_place
from app.models import Signature, Subject
from app.review.signatures import ref_of
from app.study.loader import Study

CASEBOOK_SIGNATURE_OID = "SD.CASEBOOK"


def signature_def_oid(form_oid: str | None) -> str:
    """The SignatureDef OID of a form's signature, or of the casebook's (None)."""
    return CASEBOOK_SIGNATURE_OID if form_oid is None else f"SD.{form_oid}"


def signature_defs(study: Study) -> list[etree._Element]:
    """AdminData's SignatureDef elements: the casebook's, then each signed form's."""
    settings = study.signatures
    if settings is None:
        return []
    meanings: list[tuple[str | None, str]] = (
        [(None, settings.casebook.meaning)] if settings.casebook else []
    )
    meanings += [(signed.form, signed.meaning) for signed in settings.forms]
    elements = []
    for form_oid, meaning in meanings:
        element = etree.Element(
            q("SignatureDef"), OID=signature_def_oid(form_oid), Methodology="Electronic",
            nsmap=ODM_NSMAP,
        )  # fmt: skip
        etree.SubElement(element, q("Meaning")).text = meaning
        etree.SubElement(element, q("LegalReason")).text = settings.legal_reason
        elements.append(element)
    return elements


def valid_signatures(session: Session, subject: Subject) -> dict[FormRef | None, Signature]:
    """The subject's signatures in force, by what they sign (None: the casebook)."""
    statement = (
        select(Signature)
        .where(Signature.subject_id == subject.id, col(Signature.broken_at).is_(None))
        .order_by(col(Signature.id))
    )
    return {ref_of(signature): signature for signature in session.exec(statement)}


def signature_element(signature: Signature, sites: Sites, site_id: int) -> etree._Element:
    """The Signature element of a stored signature (append it right after the element's
    AuditRecord, before anything else)."""
    element = etree.Element(q("Signature"), ID=f"SIG.{signature.id}", nsmap=ODM_NSMAP)
    etree.SubElement(element, q("UserRef"), UserOID=user_oid(signature.signer_id))
    etree.SubElement(element, q("LocationRef"), LocationOID=sites[site_id])
    etree.SubElement(element, q("SignatureRef"), SignatureOID=signature_def_oid(signature.form_oid))
    stamp = etree.SubElement(element, q("DateTimeStamp"))
    stamp.text = signature.signed_at.isoformat(timespec="seconds")
    return element


def write_signature_history(
    xf: etree._IncrementalFileWriter,
    session: Session,
    subject: Subject,
    repeats: RepeatKeys,
    sites: Sites,
    changed_since: datetime | None,
) -> int:
    """The transactional export's signings of the subject, in the order signed (those after
    `changed_since`), valid and broken alike: each a SubjectData of TransactionType Context
    with the Signature on itself (the casebook) or on the signed FormData, Context
    containers down to it. A signature broken since is followed in the file by the change
    that broke it; returns how many were written."""
    statement = select(Signature).where(Signature.subject_id == subject.id)
    if changed_since is not None:
        statement = statement.where(col(Signature.signed_at) > changed_since)
    written = 0
    for signature in session.exec(statement.order_by(col(Signature.id))):
        element = etree.Element(
            q("SubjectData"), SubjectKey=subject.subject_key, TransactionType="Context",
            nsmap=ODM_NSMAP,
        )  # fmt: skip
        place = context_place(
            element, repeats, signature.event_oid, signature.event_repeat, signature.form_oid,
            signature.form_repeat,
        )  # fmt: skip
        place.insert(0, signature_element(signature, sites, subject.site_id))
        xf.write(element)
        written += 1
    return written
