"""How long the annotated and the blank CRF take to make for a study (default ZM001): the
annotations from the mappings, then acrf.pdf and blankcrf.pdf laid out and written, as every
SDTM and Define-XML export does (it reads no subject's data, so the time is the same for any
number of subjects).

    python bench/crf_pdf.py [--forms forms --exports exports] [--runs 3]

Prints each run's seconds (annotations, each PDF) and the CPU seconds of both (the figure to
compare on a shared machine: wall time grows with the other processes' load), the pages and
sizes of the files.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.exporters.crf_annotations import annotate  # noqa: E402
from app.exporters.crf_pdf import ACRF_PDF, BLANK_CRF_PDF, render_crf  # noqa: E402
from app.sdtm.spec import load_sdtm_specs  # noqa: E402
from app.study.loader import load_study  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--forms", type=Path, default=REPO / "forms")
    parser.add_argument("--exports", type=Path, default=REPO / "exports")
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    study = load_study(options.forms)
    specs = load_sdtm_specs(options.exports, study)
    totals, cpu = [], []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(1, options.runs + 1):
            start, start_cpu = time.perf_counter(), time.process_time()
            annotations = annotate(study, specs)
            annotated = time.perf_counter()
            acrf, pages = render_crf(study, annotations)
            made = time.perf_counter()
            blank, _blank_pages = render_crf(study, None)
            (Path(folder) / ACRF_PDF).write_bytes(acrf)
            (Path(folder) / BLANK_CRF_PDF).write_bytes(blank)
            done = time.perf_counter()
            totals.append(done - start)
            cpu.append(time.process_time() - start_cpu)
            print(
                f"run {run}: annotations {annotated - start:.3f} s, acrf.pdf {made - annotated:.2f} s, "
                f"blankcrf.pdf {done - made:.2f} s, both {done - start:.2f} s "
                f"({cpu[-1]:.2f} s CPU)"
            )
    last_page = max(page for numbers in pages.pages.values() for page in numbers)
    print(
        f"{study.info.oid}: {len(study.forms)} forms; acrf.pdf {last_page} pages "
        f"{len(acrf) / 1024:.0f} KiB, blankcrf.pdf {len(blank) / 1024:.0f} KiB; "
        f"both PDFs median {statistics.median(totals):.2f} s, best {min(totals):.2f} s, "
        f"CPU median {statistics.median(cpu):.2f} s"
    )


if __name__ == "__main__":
    main()
