"""define.html: a Define-XML document rendered with CDISC's stylesheet `define2-1.xsl`, run
with its lookups indexed.

The stylesheet finds the definition an OID names by scanning every definition of its kind,
e.g. `$g_seqItemDefs[@OID=$whereRefItemOID]` for each where clause: with ZM001's 545 where
clauses over about 1,400 ItemDefs that took 1.5-2 s of libxslt's time, whatever the scope of
the export. The stylesheet run here is that file with those scans replaced by `xsl:key`
indexes over exactly the same nodes (the children of the first MetaDataVersion of the first
Study, as the stylesheet's `$g_seq*` variables select), which renders the same bytes in about
0.1 s. tests/test_define.py renders with both and compares them. The file shipped beside
define.xml, for a browser to render, is CDISC's, unchanged.

Why the same: `$seq[@OID=$x]` keeps the nodes of `$seq` whose OID equals the string value of
`$x` (any node's, when `$x` is a node-set) in document order, and `key(name, $x)` returns the
nodes so indexed for that string (for any node's) in document order too. key() looks in the
context node's document, which is always the source document here: the stylesheet reads no
other (no document(), no node-set()).
"""

from __future__ import annotations

import re
from functools import cache

from lxml import etree

from app.schemas import DEFINE_STYLESHEET

_MDV = "/odm:ODM/odm:Study[1]/odm:MetaDataVersion[1]"
"""What the stylesheet's $g_MetaDataVersion selects; its $g_seq* variables are children."""

_KEYS = {
    "td-ItemDefs": ("odm:ItemDef", "@OID"),
    "td-CodeLists": ("odm:CodeList", "@OID"),
    "td-WhereClauseDefs": ("def:WhereClauseDef", "@OID"),
    "td-ValueListDefs": ("def:ValueListDef", "@OID"),
    "td-ItemGroupDefs": ("odm:ItemGroupDef", "@OID"),
    "td-MethodDefs": ("odm:MethodDef", "@OID"),
    "td-CommentDefs": ("def:CommentDef", "@OID"),
    "td-ItemGroupItemRefs": ("odm:ItemGroupDef/odm:ItemRef", "@ItemOID"),
    "td-ValueListRefs": ("odm:ItemDef/def:ValueListRef", "@ValueListOID"),
}
"""Index name: the nodes under $g_MetaDataVersion it holds, and the value it finds them by."""

_LOOKUPS = (
    # $g_seqItemDefs[@OID=$x] -> key('td-ItemDefs', $x), and so on for each kind
    (
        r"\$g_seq(ItemDefs|CodeLists|WhereClauseDefs|ValueListDefs|ItemGroupDefs|MethodDefs"
        r"|CommentDefs)\[@OID ?= ?(\$\w+)\]",
        r"key('td-\1', \2)",
        35,
    ),
    (
        r"\$g_seqItemGroupDefs/odm:ItemRef\[@ItemOID=(\$\w+)\]",
        r"key('td-ItemGroupItemRefs', \1)",
        3,
    ),
    # in tableItemDefs and tableValueListsInTable, ../.. is $g_MetaDataVersion: the context is
    # an ItemRef of one of its ItemGroupDefs or ValueListDefs
    (r"\.\./\.\./odm:ItemDef\[@OID=(\$\w+)\]", r"key('td-ItemDefs', \1)", 2),
    (
        r"\.\./\.\./odm:ItemDef/def:ValueListRef\[@ValueListOID=(\$\w+)\]",
        r"key('td-ValueListRefs', \1)",
        1,
    ),
)
"""(pattern, replacement, how many times the stylesheet has it)."""

_ANCHOR = "  <!-- Global Variables (XPath) -->"


class StylesheetChanged(RuntimeError):
    """The vendored stylesheet no longer has the lookups this module indexes."""


@cache
def indexed_stylesheet() -> bytes:
    """define2-1.xsl with its OID lookups replaced by keys (derived once per process)."""
    text = DEFINE_STYLESHEET.read_text(encoding="utf-8")
    for pattern, replacement, expected in _LOOKUPS:
        text, found = re.subn(pattern, replacement, text)
        if found != expected:
            raise StylesheetChanged(
                f"{DEFINE_STYLESHEET.name}: {pattern} {found} times, not {expected}"
            )
    if text.count(_ANCHOR) != 1:
        raise StylesheetChanged(f"{DEFINE_STYLESHEET.name}: no single {_ANCHOR.strip()}")
    keys = "".join(
        f'  <xsl:key name="{name}" match="{_MDV}/{match}" use="{use}"/>\n'
        for name, (match, use) in _KEYS.items()
    )
    return text.replace(_ANCHOR, keys + _ANCHOR).encode("utf-8")


def render_html(tree: etree._ElementTree, *, indexed: bool = True) -> bytes:
    """define.html: the Define-XML document rendered with CDISC's stylesheet (XSLT 1.0),
    indexed (see the module's text) unless `indexed` is false. The stylesheet is compiled for
    each call (about 10 ms): an lxml XSLT object is best used in the thread that made it, and
    exports render in a worker thread."""
    if indexed:
        source = etree.fromstring(indexed_stylesheet(), base_url=str(DEFINE_STYLESHEET))
    else:
        source = etree.parse(str(DEFINE_STYLESHEET)).getroot()
    return bytes(etree.XSLT(source)(tree))
