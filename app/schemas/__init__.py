"""The official schemas TrialDesk validates its CDISC files against, vendored with their
licences, and streaming validation that keeps memory bounded for files of any size."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

SCHEMAS = Path(__file__).resolve().parent
ODM_SCHEMA = SCHEMAS / "odm-1.3.2" / "ODM1-3-2.xsd"
DEFINE_SCHEMA = SCHEMAS / "define-2.1" / "cdisc-define-2.1" / "define2-1-0.xsd"
DEFINE_STYLESHEET = SCHEMAS / "define-2.1" / "stylesheet" / "define2-1.xsl"


class SchemaInvalid(Exception):
    """A file does not conform to its schema; the message gives line and reason."""


@cache
def odm_schema() -> etree.XMLSchema:
    """The ODM 1.3.2 schema (loaded once per process; lxml schemas are read-only)."""
    return etree.XMLSchema(file=str(ODM_SCHEMA))


@cache
def define_schema() -> etree.XMLSchema:
    """The Define-XML 2.1 schema: ODM 1.3.2 extended by the def: namespace (loaded once)."""
    return etree.XMLSchema(file=str(DEFINE_SCHEMA))


def safe_parser() -> etree.XMLParser:
    """A parser for files from elsewhere: no external entities, no network access."""
    return etree.XMLParser(resolve_entities=False, no_network=True)


def validate_streaming(path: Path, schema: etree.XMLSchema) -> int:
    """Validate an XML file against `schema` while reading it, freeing each element once it
    is read; returns the number of elements. Raises SchemaInvalid naming the line and rule."""
    count = 0
    try:
        for _event, element in etree.iterparse(
            str(path), schema=schema, events=("end",), resolve_entities=False, no_network=True
        ):
            count += 1
            element.clear(keep_tail=True)
            # Drop the cleared siblings too, or the parent keeps a list as long as the file.
            parent = element.getparent()
            while parent is not None and element.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as error:
        raise SchemaInvalid(f"{path.name}: {error}") from error
    return count
