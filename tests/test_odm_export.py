"""`trialdesk export odm` on data entered through the app validates against ODM 1.3.2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lxml import etree

from tests.conftest import ODM_SCHEMA, REPO, LiveServer, logged_in_client
from tests.test_web import complete_consent, register, save

NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}


def test_exported_odm_of_entered_data_is_valid_and_carries_the_audit_trail(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = logged_in_client(live_server, "coordinator")
    subject = register(client)
    complete_consent(client, subject, "2026-03-10")
    save(
        client,
        subject,
        "F.DM",
        {"IG.DM:1:BRTHDAT": "1980-03-11", "IG.DM:1:SEX": "F", "IG.DM:1:CHILDPOT": "Y"},
        version=0,
    )
    save(
        client,
        subject,
        "F.DM",
        {
            "IG.DM:1:BRTHDAT": "1980-03-11",
            "IG.DM:1:SEX": "F",
            "IG.DM:1:CHILDPOT": "N",
            "IG.DM:1:NCBPRSN": "HYSTERECTOMY",
        },
        version=1,
    )
    output = tmp_path / "zm001.xml"
    env = {
        **os.environ,
        "TRIALDESK_DATABASE_URL": live_server.settings.database_url,
        "TRIALDESK_STUDY_DIR": str(REPO / "forms"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "app", "export", "odm", "-o", str(output)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 subjects" in result.stdout

    schema = etree.XMLSchema(file=str(ODM_SCHEMA))
    document = etree.parse(str(output))
    assert schema.validate(document), schema.error_log
    subject_data = document.find(".//odm:SubjectData", NS)
    assert subject_data is not None and subject_data.get("SubjectKey") == "01-001"
    age = document.find(".//odm:ItemData[@ItemOID='IT.DM.AGE']", NS)
    assert age is not None and age.get("Value") == "45"
    childpot = document.find(".//odm:ItemData[@ItemOID='IT.DM.CHILDPOT']", NS)
    assert childpot is not None and childpot.get("Value") == "N"
    audit = childpot.find("odm:AuditRecord", NS)
    assert audit is not None
    user = audit.find("odm:UserRef", NS).get("UserOID")  # type: ignore[union-attr]
    name = document.find(f".//odm:User[@OID='{user}']/odm:LoginName", NS)
    assert name is not None and name.text == "coordinator"
    assert audit.find("odm:LocationRef", NS).get("LocationOID") == "SITE.01"  # type: ignore[union-attr]
    status = document.find(".//odm:FormData[@FormOID='F.IC']//odm:FlagValue", NS)
    assert status is not None and status.text == "complete"
    assert document.find(".//odm:MetaDataVersion/odm:FormDef[@OID='F.AE']", NS) is not None
