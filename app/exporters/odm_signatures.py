"""Electronic signatures in the ODM 1.3.2 snapshot: each valid signature is a native
`Signature` of the SubjectData (the casebook) or FormData (a form) it signs, with UserRef,
LocationRef (the subject's site), SignatureRef and DateTimeStamp; AdminData holds a
`SignatureDef` per meaning the study defines (Methodology Electronic, Meaning, LegalReason).

ODM allows one Signature per element: the one in force. Broken signatures are not exported
(a broken signature no longer attests the data); their history is in the audit trail
(AuditRecords of the signature actions) and on the pages.
"""

from __future__ import annotations

from lxml import etree
from sqlmodel import Session, col, select

from app.crf.changes import FormRef
from app.exporters.odm_common import ODM_NSMAP, Sites, q, user_oid
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
