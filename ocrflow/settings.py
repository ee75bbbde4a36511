"""Typed settings, passed explicitly to the stages that need them.

Every field can be set from the environment with the ``OCRFLOW_`` prefix and ``__``
between nested names, e.g. ``OCRFLOW_INGEST__PDF_DPI=150`` or
``OCRFLOW_DATABASE_URL=postgresql+psycopg://127.0.0.1/test``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestOptions(BaseModel):
    pdf_dpi: int = Field(200, ge=36, le=600)
    """Resolution PDF pages are rendered at."""
    max_pages: int = Field(500, ge=1)
    """A document with more pages is rejected rather than processed in part."""
    max_file_bytes: int = Field(200 * 1024 * 1024, ge=1)
    max_decoded_pixels: int = Field(200_000_000, ge=1)
    """Pixels a single decoded image may have before it counts as a decompression bomb."""


class PreprocessOptions(BaseModel):
    denoise: bool = True
    denoise_method: Literal["median", "nlmeans"] = "median"
    clahe: bool = True
    deskew: bool = True
    orientation: bool = True


class LocalEngineOptions(BaseModel):
    """RapidOCR settings; the defaults are the ones measured best on eval-dev."""

    use_angle_classifier: bool = False
    max_side_len: int = Field(960, ge=64)
    text_score: float = Field(0.5, ge=0.0, le=1.0)
    threads: int = Field(0, ge=0)
    """onnxruntime intra-op threads; 0 lets onnxruntime decide."""


class RoutingOptions(BaseModel):
    min_field_confidence: float = Field(0.9, ge=0.0, le=1.0)
    """A required field below this confidence sends the document to review."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCRFLOW_", env_nested_delimiter="__", extra="ignore")

    out_dir: Path = Path("ocrflow-out")
    database_url: str | None = None
    """Any SQLAlchemy URL; defaults to a SQLite file in the output folder."""
    schema_dir: Path | None = None
    """Extra document-type schemas, beside the bundled ones."""
    engine: str = "local"
    ingest: IngestOptions = Field(default_factory=IngestOptions)
    preprocess: PreprocessOptions = Field(default_factory=PreprocessOptions)
    local_engine: LocalEngineOptions = Field(default_factory=LocalEngineOptions)
    routing: RoutingOptions = Field(default_factory=RoutingOptions)

    @property
    def work_dir(self) -> Path:
        """Where page images live between stages."""
        return self.out_dir / ".work"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.out_dir / 'ocrflow.sqlite3').resolve()}"
