"""Fuzz ingest and a whole run with hostile inputs; write the figures to bench/RESULTS-reliability.md.

    flock /tmp/ocrflow-heavy.lock .venv/bin/python bench/fuzz_inputs.py [--count 300] [--seed 0]

Builds a corpus with tests/fuzz_corpus.py (bit flips, truncations, header mutations of six
formats; special files; links and loops; odd names; page-count and pixel bombs), then:

1. ingests every file a run would find, each in its own thread with a deadline (a file still
   running at the deadline counts as hung);
2. runs ``ocrflow run <corpus> --runner inline`` over the whole folder within a time limit and
   reads every result: every file must end with an outcome, and every reason must be one a
   person can act on (:func:`tests.fuzz_corpus.problems`: no internal error, no exception names).

Writes the "Hostile inputs" section of bench/RESULTS-reliability.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocrflow.ingest import discover  # noqa: E402
from ocrflow.models import shown_path  # noqa: E402
from ocrflow.settings import IngestOptions  # noqa: E402
from tests import fuzz_corpus  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS-reliability.md"
SECTION = "## Hostile inputs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds one file's ingest may take")
    parser.add_argument("--run-timeout", type=float, default=3600.0, help="seconds the whole run may take")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave the results file")
    parser.add_argument("--ingest-only", action="store_true", help="no whole run (it reads pages with OCR)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ocrflow-fuzz-") as work:
        corpus = Path(work) / "inbox"
        cases = fuzz_corpus.build_corpus(corpus, args.count, args.seed)
        documents = discover([corpus])
        records = fuzz_corpus.ingest_each(corpus, Path(work) / "pages", IngestOptions(), args.deadline)
        hung = [record.path.name for record in records if record.result is None]
        ingest_problems = fuzz_corpus.problems(
            {"source": str(r.path), "reasons": [x.model_dump() for x in r.result.reasons]}
            for r in records
            if r.result is not None
        )

        started = time.perf_counter()
        if args.ingest_only:
            finished = subprocess.CompletedProcess([], 0, "", "")
        else:
            finished = fuzz_corpus.run_cli(corpus, Path(work) / "out", timeout=args.run_timeout)
        run_seconds = time.perf_counter() - started
        results = fuzz_corpus.outcomes(Path(work) / "out")

        if args.ingest_only:  # what ingest alone decided, as outcomes: refused whole, or pages made
            results = [
                {
                    "source": shown_path(r.path),
                    "status": "pages made" if r.result.pages else "rejected",
                    "reasons": [x.model_dump() for x in r.result.reasons],
                }
                for r in records
                if r.result is not None
            ]
        sources = {result["source"] for result in results}
        # A file with the same bytes as another is the same document, stored once (under the first name).
        stored = {result["document_id"] for result in results if "document_id" in result}
        missing = [
            shown_path(path)
            for path in documents
            if shown_path(path) not in sources and not (path.is_file() and _sha256(path) in stored)
        ]

    run_problems = [] if args.ingest_only else fuzz_corpus.problems(results)
    seconds = sorted(record.seconds for record in records)
    figures = {
        "cases": Counter(case.kind.split(":")[0] for case in cases),
        "kinds": Counter(case.kind for case in cases),
        "documents": len(documents),
        "hung": hung,
        "ingest_problems": ingest_problems,
        "ingest_median": statistics.median(seconds),
        "ingest_max": (seconds[-1], max(records, key=lambda record: record.seconds).path.name),
        "returncode": finished.returncode,
        "run_seconds": run_seconds,
        "statuses": Counter(result["status"] for result in results),
        "codes": Counter(reason["code"] for result in results for reason in result["reasons"]),
        "rejected_by": Counter(
            result["reasons"][0]["code"] for result in results if result["status"] == "rejected"
        ),
        "by_kind": outcomes_by_kind(cases, results),
        "missing": missing,
        "run_problems": run_problems,
    }
    section = render(args, figures)
    print(section)
    if finished.returncode != 0:
        print(finished.stderr[-3000:], file=sys.stderr)
    if not args.no_write:
        write_section(section)
    return 0 if not (hung or ingest_problems or run_problems or missing or finished.returncode) else 1


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outcomes_by_kind(cases: list[fuzz_corpus.Case], results: list[dict]) -> dict[str, Counter]:
    """Statuses per kind of case; a file the generator made beside a case (a link's target) counts as
    "beside a link"."""
    kind_of = {case.name[:4]: case.kind for case in cases}
    table: dict[str, Counter] = {}
    for result in results:
        prefix = Path(result["source"]).name[:4]
        kind = kind_of.get(prefix, "beside a link") if prefix.isdigit() else "beside a link"
        table.setdefault(kind, Counter())[result["status"]] += 1
    return table


def render(args: argparse.Namespace, figures: dict) -> str:
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(figures["cases"].items()))
    statuses = ", ".join(f"{status} {count}" for status, count in sorted(figures["statuses"].items()))
    rejected = "\n".join(f"| `{code}` | {count} |" for code, count in figures["rejected_by"].most_common())
    slowest, slowest_name = figures["ingest_max"]
    flags = " --ingest-only" if args.ingest_only else ""
    columns = ["pages made", "rejected"] if args.ingest_only else ["accepted", "needs_review", "rejected"]
    lines = [
        SECTION,
        "",
        f"`bench/fuzz_inputs.py --count {args.count} --seed {args.seed}{flags}` "
        f"(corpus: tests/fuzz_corpus.py; {time.strftime('%Y-%m-%d', time.gmtime())}, "
        "2 cores shared with the team).",
        "",
        f"- Files made: {args.count} ({kinds}); a run finds {figures['documents']} files to read in them "
        "(a link inside the folder counts as its target, a name without a supported suffix is skipped; "
        "files with the same bytes are one document, stored once).",
        f"- Ingest, each file alone with a {args.deadline:.0f} s deadline: {len(figures['hung'])} hung; "
        f"median {figures['ingest_median'] * 1000:.0f} ms, slowest {slowest:.2f} s (`{slowest_name}`); "
        f"{len(figures['ingest_problems'])} reasons that are not ones a person can act on.",
        (
            "- No whole run this time (`--ingest-only`)."
            if args.ingest_only
            else f"- `ocrflow run --runner inline` over the folder: exit code {figures['returncode']} after "
            f"{figures['run_seconds']:.0f} s; {len(figures['missing'])} files without an outcome; "
            f"{len(figures['run_problems'])} internal errors or technical messages."
        ),
        f"- Outcomes: {statuses}.",
        "",
        "| rejected for (first reason) | documents |",
        "|---|---|",
        rejected,
        "",
        f"| kind of file | made | {' | '.join(columns)} |",
        "|---|---|" + "---|" * len(columns),
        *(
            f"| {kind} | {made} | "
            + " | ".join(str(figures["by_kind"].get(kind, Counter())[column]) for column in columns)
            + " |"
            for kind, made in sorted({**dict.fromkeys(figures["by_kind"], 0), **figures["kinds"]}.items())
        ),
    ]
    for title, items in (
        ("Hung", figures["hung"]),
        ("Without an outcome", figures["missing"]),
        ("Problems", figures["ingest_problems"] + figures["run_problems"]),
    ):
        if items:
            lines += ["", f"{title}:", *(f"- `{item}`" for item in items[:20])]
    return "\n".join(lines) + "\n"


def write_section(section: str) -> None:
    """Replace this section of the results file, or add it; other sections are left as they are."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Reliability\n"
    start = text.find(SECTION)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    RESULTS.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
