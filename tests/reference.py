"""Documented facts read from the vendor documentation in ``../shared/reference``.

Fidelity tests compare the code against what these functions read from the reference
files, never against a copy of the code's own constants. The folder is found beside the
repository (as CI lays it out) or beside one of its parent folders (a git worktree), or
through ``OCRFLOW_REFERENCE``; a test needing it skips when it is absent.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _find_reference() -> Path:
    if "OCRFLOW_REFERENCE" in os.environ:
        return Path(os.environ["OCRFLOW_REFERENCE"])
    candidates = [folder / "shared" / "reference" for folder in ROOT.parents]
    return next((path for path in candidates if path.is_dir()), candidates[0])


REFERENCE = _find_reference()
QWEN_OCR = "001_cf0c23fe6fb94713.txt"
"""Qwen-OCR built-in tasks, prompts, limits, going live."""
QWEN_OCR_GUIDE = "000_9bcf17bcd6931b46.txt"
COMPATIBLE_MODE = "003_75bb22f9bd474f6f.txt"
QIANFAN = "004_19fc4425153f3bdd.txt"

TASKS = (
    "advanced_recognition",
    "table_parsing",
    "document_parsing",
    "formula_recognition",
    "text_recognition",
    "multi_lan",
)


@cache
def text(name: str) -> str:
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"the vendor reference {name} is not at {REFERENCE} (set OCRFLOW_REFERENCE)")
    return path.read_text(encoding="utf-8")


def _squash(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip()


@cache
def task_prompts() -> dict[str, str]:
    """Each built-in task's "Specified prompt", from the task tables of file 001.

    A table row reads ``<task><prompt>Format: ...``; the table-parsing prompt is wrapped in
    ``{`...`}`` by the page's markup, which is not part of the prompt.
    """
    prompts = {}
    for line in text(QWEN_OCR).splitlines():
        for task in TASKS:
            if line.startswith(task) and "Format:" in line:
                prompt = line[len(task) : line.index("Format:")]
                prompts[task] = prompt.removeprefix("{`").removesuffix("`}")
    kie = next(line for line in text(QWEN_OCR).splitlines() if line.startswith("key_information_extraction"))
    prompts["key_information_extraction"] = kie[
        len("key_information_extractionCustom field extraction:") : kie.index("Format:")
    ]
    full = next(line for line in text(QWEN_OCR).splitlines() if line.startswith("Full field extraction:"))
    prompts["key_information_extraction_all_fields"] = full[
        len("Full field extraction:") : full.index("Format:")
    ]
    return prompts


def kie_prompt_with_schema(schema_text: str) -> str:
    """The OpenAI example's key-information prompt with ``schema_text`` put in, whitespace squashed."""
    source = text(QWEN_OCR)
    start = source.index('prompt = f"""Assume you are an information extraction expert.')
    template = source[start + len('prompt = f"""') : source.index('"""', start + len('prompt = f"""'))]
    return _squash(template.replace("{result_schema}", schema_text))


@cache
def qwen_ocr_limits() -> dict[str, dict[str, int]]:
    """The "Availability" table of file 001: context window, max input and max output per model."""
    limits = {}
    for match in re.finditer(
        r"^(qwen-vl-ocr[\w-]*?)(?:No|Yes)([\d,]+?)(30,000)([\d,]+)$", text(QWEN_OCR), re.MULTILINE
    ):
        model, context, max_input, max_output = match.groups()
        limits[model] = {
            "context_window": int(context.replace(",", "")),
            "max_input": int(max_input.replace(",", "")),
            "max_output": int(max_output.replace(",", "")),
        }
    return limits


@cache
def region_ocr_models() -> dict[str, set[str]]:
    """The Qwen-OCR models file 003 lists per region (International = Singapore, US = Virginia)."""
    source = text(COMPATIBLE_MODE)
    sections = {
        "singapore": source[source.index("\nInternational\n") : source.index("\nUS\n")],
        "virginia": source[source.index("\nUS\n") : source.index("\nChinese mainland\n")],
        "beijing": source[source.index("\nChinese mainland\n") : source.index("\nRegional endpoints")],
    }
    models = {}
    for region, section in sections.items():
        line = next((row for row in section.splitlines() if row.startswith("Qwen-OCR series:")), "")
        models[region] = {
            name.strip() for name in line.removeprefix("Qwen-OCR series:").split(",") if name.strip()
        }
    return models
