"""Typed settings, passed explicitly to the stages that need them.

Every field can be set from the environment with the ``OCRFLOW_`` prefix and ``__``
between nested names, e.g. ``OCRFLOW_INGEST__PDF_DPI=150`` or
``OCRFLOW_DATABASE_URL=postgresql+psycopg://127.0.0.1/test``.
"""

from __future__ import annotations

import math
import os
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
    """A larger file is refused by its size, before any of it is read."""
    follow_links_outside: bool = False
    """Follow symbolic links in an input folder to files outside it. Off: a folder shared for
    uploads cannot be made to read other files on the machine (``/proc/self/environ``...)."""
    max_decoded_pixels: int = Field(200_000_000, ge=1)
    """Pixels a single decoded image may have before it counts as a decompression bomb."""


class PreprocessOptions(BaseModel):
    rescale: bool = True
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
    detection_side: int = Field(736, ge=32)
    """Text detection runs on the page scaled so its shorter side is at least this many pixels
    (RapidOCR's ``Det.limit_side_len``); detection's CPU grows with its square."""
    line_width: int = Field(240, ge=16)
    """Recognition pads each line, 48 px high, to at least this width (RapidOCR's
    ``Rec.rec_img_shape``): short lines (a price, a quantity) cost as much as one this wide.
    240 instead of RapidOCR's 320: ~10% less of the engine's CPU on receipts, every eval-dev
    receipt's outcome and the text lines' CER unchanged; 160 saved 17% but read text lines worse
    (bench/RESULTS-overhead.md)."""
    line_batch: int = Field(6, ge=1)
    """Lines recognised together (RapidOCR's ``Rec.rec_batch_num``), each padded to the widest of them."""
    threads: int = Field(1, ge=0)
    """onnxruntime intra-op threads a page is read with; 0 lets onnxruntime decide (one per core).
    With 1, pages are read side by side instead (see ``parallel``): less CPU per page than one
    page on every core (bench/RESULTS-overhead.md)."""
    parallel: int = Field(0, ge=0)
    """Pages one process reads at once, whatever its thread pool; 0: its cores divided by
    ``threads`` (at least 1), so pages x threads never exceed the cores. 1 where memory is tight:
    a 200-page PDF peaked at 792 MiB instead of ~1.0 GiB, at half the pages a minute on two
    cores (bench/RESULTS-overhead.md)."""
    release_memory: bool = True
    """Hand the memory a page's reading freed back to the system after each page (glibc's
    ``malloc_trim``). Off, each page read at once stays resident at its peak (several hundred MiB
    for a receipt scan) until the process ends: a 40-page PDF peaked at 1305 MiB instead of 992,
    for 1-3% less CPU (bench/RESULTS-overhead.md)."""
    shared_limit: str | None = None
    """A Prefect global concurrency limit each page's local OCR takes a slot of, so the workers on
    one machine share its cores instead of oversubscribing them; ``ocrflow setup`` creates
    ``ocrflow-local-ocr`` with a slot per core, right for ``threads=1``. Off by default:
    Prefect's ephemeral mode has no such limit."""

    def pages_at_once(self) -> int:
        """``parallel``, or when 0 the cores divided by ``threads`` (at least 1)."""
        return self.parallel or max(1, available_cores() // (self.threads or available_cores()))


DashScopeRegion = Literal["singapore", "virginia", "beijing"]

DASHSCOPE_HOSTS: dict[str, str] = {
    "singapore": "https://dashscope-intl.aliyuncs.com",
    "virginia": "https://dashscope-us.aliyuncs.com",
    "beijing": "https://dashscope.aliyuncs.com",
}
"""Each region's endpoint; an API key works only in the region that issued it."""

QwenOcrModel = Literal[
    "qwen-vl-ocr",
    "qwen-vl-ocr-latest",
    "qwen-vl-ocr-2025-11-20",
    "qwen-vl-ocr-2025-08-28",
    "qwen-vl-ocr-2025-04-13",
    "qwen3.5-ocr",
]
"""Qwen-OCR models with the built-in tasks (``qwen-vl-ocr-2024-10-28`` has none, so it is not offered)."""


class DashScopeOptions(BaseModel):
    """The ``dashscope`` engine: Qwen-OCR through DashScope's native API.

    The API key is read from the environment variable ``api_key_env`` or, when that is
    unset, from the Prefect Secret block ``api_key_secret_block``, at call time only.
    Each image's ``min_pixels``/``max_pixels`` come from :class:`CostOptions`, so what is
    estimated is what is sent.
    """

    model: QwenOcrModel = "qwen-vl-ocr"
    region: DashScopeRegion = "beijing"
    base_url: str | None = None
    """Overrides the region, e.g. a workspace endpoint ``https://{WorkspaceId}.cn-beijing.maas.aliyuncs.com/api/v1``."""
    api_key_env: str = "DASHSCOPE_API_KEY"
    api_key_secret_block: str | None = "dashscope-api-key"
    enable_rotate: bool = False
    """Let the service straighten skewed pages; off because preprocessing deskews already."""
    timeout_seconds: float = Field(180.0, gt=0)
    """DashScope ends non-streaming calls after 180 s and marks the answer partial."""
    max_input_tokens: int = Field(30_000, ge=1000)
    """Multi-page requests are packed to stay under this (Qwen-OCR's input limit)."""

    @property
    def api_url(self) -> str:
        """The native API root the SDK is pointed at (``.../api/v1``)."""
        return (self.base_url or f"{DASHSCOPE_HOSTS[self.region]}/api/v1").rstrip("/")


class OpenAIOptions(BaseModel):
    """The ``openai`` engine: any OpenAI-compatible chat endpoint.

    With no ``base_url`` it is DashScope's compatible mode in ``region``. For a
    self-hosted server (vLLM serving Qianfan-OCR or Qwen3-VL) set ``base_url``,
    ``model`` and ``prompt_style``; such a server needs no key unless started with one.
    In the ``qwen-ocr`` style each image carries ``min_pixels``/``max_pixels`` from
    :class:`CostOptions`; other servers do not know them.
    """

    base_url: str | None = None
    region: DashScopeRegion = "beijing"
    model: str = "qwen-vl-ocr"
    prompt_style: Literal["qwen-ocr", "qianfan-ocr", "generic"] = "qwen-ocr"
    """Which model family's prompts the built-in tasks become; see ``ocrflow.engines.prompts``."""
    qwen_prompt_language: Literal["zh", "en"] = "en"
    """The documented English prompts (``../shared/reference``), or the Chinese edition's."""
    api_key_env: str = "DASHSCOPE_API_KEY"
    api_key_secret_block: str | None = "dashscope-api-key"
    timeout_seconds: float = Field(180.0, gt=0)
    max_input_tokens: int = Field(30_000, ge=1000)
    max_tokens: int | None = Field(None, ge=1)
    """The answer's token limit; ``None`` leaves the server's default."""
    stream: Literal["long", "always", "never"] = "long"
    """Stream answers (no 180 s cut-off): for long-answer tasks (document, table parsing), all, none."""
    logprobs: Literal["auto", "always", "never"] = "auto"
    """Ask for token log probabilities (the standard ``logprobs`` parameter). ``auto`` asks a
    self-hosted server (``base_url`` set; vLLM implements it) and not DashScope, whose reference
    documents no such parameter for Qwen-OCR and shows ``"logprobs": null`` in every answer."""

    @property
    def api_url(self) -> str:
        return (self.base_url or f"{DASHSCOPE_HOSTS[self.region]}/compatible-mode/v1").rstrip("/")


class RoutingOptions(BaseModel):
    min_field_confidence: float = Field(0.9, ge=0.0, le=1.0)
    """A required field below this confidence sends the document to review."""


class VerifyOptions(BaseModel):
    """How an API engine's values are vouched for (:mod:`ocrflow.verify`, :mod:`ocrflow.confidence`)."""

    independent_reading: bool = True
    """The embedded engine reads every preprocessed page of a document an API engine read, and each
    field is looked for in its lines (CPU: ``usage.verify_cpu_seconds``). Off: API fields are
    ``unverified``; a review rule's ``require_verification`` then sends them to a person."""
    detection_side: int = Field(480, ge=32)
    """The independent reader's ``local_engine.detection_side``: a receipt's text is tall enough
    to find at 480 px across, at half the embedded engine's detection CPU."""
    second_reading: bool = False
    """A second, different recogniser (PP-OCRv4, :mod:`ocrflow.engines.second`) reads again the lines
    of the embedded engine's receipt addresses, whether it spells them the same is weighed, and an
    API engine's name or address the independent reader read only nearly is grounded where it
    spells the model's value (CPU: ``usage.verify_cpu_seconds``, ~0.1 s a receipt; 0.6 s and
    ~96 MiB to load a model, one per page read at once: ``local_engine.parallel``). Off by
    default: on eval-dev's held-out half it accepted no more receipts (bench/RESULTS-quality.md)."""
    line_width: int = Field(48, ge=16)
    line_batch: int = Field(1, ge=1)
    """The independent reader's ``local_engine.line_width`` and ``line_batch``: every line is
    recognised at its own width, none padded to another's. Chosen on eval-dev's tune half
    (bench/RESULTS-grounding.md): the page's CPU from 2.0 to 1.2 s, the same values grounded."""

    def reader_options(self, local: LocalEngineOptions) -> LocalEngineOptions:
        """The embedded engine's options as the independent reader uses them.

        Its own line and detection sizes; the rest (threads, shared limit) as the embedded engine's.
        """
        sizes = self.model_dump(include={"detection_side", "line_width", "line_batch"})
        return local.model_copy(update=sizes)


class ReviewRule(BaseModel):
    """When a document type goes to a person, beyond its validation errors (A2I's activation conditions).

    ``min_confidence`` maps a field (or ``"*"`` for every field) to the confidence it needs;
    ``required`` names fields that must have a value; ``audit_percent`` of the documents
    that would be accepted go to review anyway, picked by document hash, so the same
    document is always in or out of the sample and quality on the accepted stream is measured.
    """

    min_confidence: dict[str, float] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    validation_failures: bool = True
    """Send documents with validation errors to review (off: only the conditions above do)."""
    require_verification: bool = False
    """Send a document to review when a field's value was not checked against an independent
    reading (``verify.independent_reading`` off): the reason ``unverified`` names the field."""
    audit_percent: float = Field(0.0, ge=0.0, le=100.0)
    time_limit_minutes: float | None = Field(None, gt=0)
    """How long an item may wait for a decision; past it, ``ocrflow.review.overdue`` is sent once."""
    priority: int = 0
    """Items of this type are offered before lower-priority ones (then by due time, then age)."""
    assign_to: str | None = None
    """A reviewer's name or ``group:NAME`` whose queue shows this type's items first."""


class ReviewOptions(BaseModel):
    """The human-review queue and its web app."""

    lease_seconds: int = Field(900, ge=10)
    """How long a claim lasts; an item whose reviewer walked away comes back after this."""
    session_hours: float = Field(12.0, gt=0)
    secure_cookies: bool = False
    """Mark the session cookie Secure: set this when the app is served over HTTPS."""
    sign_in_attempts: int = Field(5, ge=1)
    """Failed sign-ins for one user name within ``sign_in_window_seconds`` before it is locked."""
    sign_in_attempts_per_address: int = Field(50, ge=1)
    """The same for one client address (higher: reviewers behind one proxy or NAT share it)."""
    sign_in_window_seconds: int = Field(900, ge=1)
    sign_in_cooldown_seconds: int = Field(900, ge=1)
    """How long a locked user name or address is refused, even with the right password."""
    rules: dict[str, ReviewRule] = Field(default_factory=dict)
    """Routing rules by document type; ``"*"`` applies to types without their own."""
    bystanders_see: Literal["masked", "full"] = "masked"
    """What a reviewer who does not hold an item sees of its ID and card numbers (form values,
    OCR line text, repair suggestions): masked by default; the claimant (and whoever decided
    it) sees them in full, as the work needs. The page image is shown to every reviewer."""
    notify_webhook_url: str | None = None
    """Where the example automations ``ocrflow setup`` creates send a notification when an item is
    queued (``ocrflow.review.requested``) or overdue (``ocrflow.review.overdue``); unset: none are made."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Reverse proxies (addresses or networks, e.g. ``["10.0.0.5", "10.1.0.0/16"]``) whose
    ``X-Forwarded-For``/``-Proto`` headers are believed. Empty, the default: none are, and the
    connecting address is the client's (sign-in limits count per real address)."""

    def rule_for(self, doc_type: str | None, own: ReviewRule | None = None) -> ReviewRule | None:
        """The type's rule from settings, else its ``own`` (its schema's), else the ``"*"`` rule."""
        return self.rules.get(doc_type or "") or own or self.rules.get("*")


class ModelPrice(BaseModel):
    """What one model costs, as the vendor's price lists give it: per million tokens, and/or per image.

    ``OCRFLOW_COST__PRICES='{"qwen-vl-ocr": {"input": 0.07, "output": 0.16, "as_of": "2026-03"}}'``
    (amounts in ``cost.currency``). ``per_1k_images`` is for models priced by the page, like
    Qianfan-OCR's hosted API. ``as_of`` says when the price was read, so a stale one shows.
    """

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    per_1k_images: float = Field(0.0, ge=0)
    as_of: str | None = None
    source: str | None = None


class CostOptions(BaseModel):
    """Token estimates, prices and the per-run token budget (see :mod:`ocrflow.cost`).

    Prices set here win; beside them ocrflow knows the prices ``../shared/reference`` states
    (``ocrflow.engines.catalog.DOCUMENTED_PRICES``, with their date). It states none for
    Qwen-OCR, so a Qwen-OCR model without a price here is estimated in tokens only and its cost
    shown as unknown, never guessed. For example
    ``OCRFLOW_COST__PRICES='{"qwen-vl-ocr": {"input": 0.07, "output": 0.16}}'``.
    """

    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Model name (exactly as sent) to its price (:class:`ModelPrice`)."""
    currency: str = "USD"
    token_budget: int | None = Field(None, ge=1)
    """Tokens one run may spend; documents that do not fit stay pending for the next run."""
    output_tokens_per_page: int | None = Field(None, ge=1)
    """The answer's tokens a page is assumed to cost until documents of the run have finished.

    ``None``: the model's documented output limit, 8,192 tokens for Qwen-OCR (its 38,192-token
    context less its 30,000 input tokens; ``ocrflow.engines.catalog``), so the first documents are
    never under-reserved; ``openai.max_tokens`` lowers it.
    """
    max_pixels_mode: Literal["fixed", "adaptive"] = "fixed"
    """``adaptive`` gives each page the smallest pixel budget that keeps its text legible."""
    min_pixels: int | None = Field(None, ge=1)
    """``None`` uses the model's documented default."""
    max_pixels: int | None = Field(None, ge=1)
    """``None`` uses the model's documented default; in adaptive mode, the ceiling."""
    legible_text_height: float = Field(12.0, gt=0)
    """Median glyph height, in pixels after resizing, that adaptive mode keeps (bench/RESULTS-cost.md)."""
    cache: Literal["api", "all", "off"] = "api"
    """Whose results are cached under ``<out>/.cache/ocr``: the paid API engines, every engine, none."""


class ApiLimits(BaseModel):
    """The request rate every worker shares, as a Prefect global concurrency limit.

    ``ocrflow setup`` creates the limit ``name`` with ``burst`` slots and
    ``slot_decay_per_second``; inside a flow run the API engines take one slot of it before
    each request (ocrflow/engines/_ratelimit.py).
    """

    name: str = "ocrflow-api"
    requests_per_minute: int = Field(60, ge=1)
    """The account's request quota for the model, e.g. 60 RPM; every worker together stays under it."""
    burst: int = Field(1, ge=1)
    """Slots of the limit: requests that may start at once after a quiet spell."""

    @property
    def slot_decay_per_second(self) -> float:
        return self.requests_per_minute / 60


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a pod's limit)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to read
    return max(cores, 1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCRFLOW_", env_nested_delimiter="__", extra="ignore")

    out_dir: Path = Path("ocrflow-out")
    database_url: str | None = None
    """Any SQLAlchemy URL; defaults to a SQLite file in the output folder."""
    schema_dir: Path | None = None
    """Extra document-type schemas, beside the bundled ones."""
    engine: str = "local"
    task_threads: int = Field(0, ge=0)
    """Tasks a flow run works on at once; 0: the machine's cores (at least 2). Raise it for API
    engines, which wait on the network; set it to a pod's CPU limit, which ``os.cpu_count()`` does not see."""
    ingest: IngestOptions = Field(default_factory=IngestOptions)
    preprocess: PreprocessOptions = Field(default_factory=PreprocessOptions)
    local_engine: LocalEngineOptions = Field(default_factory=LocalEngineOptions)
    routing: RoutingOptions = Field(default_factory=RoutingOptions)
    verify: VerifyOptions = Field(default_factory=VerifyOptions)
    review: ReviewOptions = Field(default_factory=ReviewOptions)
    cost: CostOptions = Field(default_factory=CostOptions)
    dashscope: DashScopeOptions = Field(default_factory=DashScopeOptions)
    openai: OpenAIOptions = Field(default_factory=OpenAIOptions)
    api_limits: ApiLimits = Field(default_factory=ApiLimits)
    review_url: str | None = None
    """Root of the review web app (``http://review.example:8080``); run summaries link to ``/items/{id}``."""

    @property
    def flow_threads(self) -> int:
        return self.task_threads or max(os.cpu_count() or 1, 2)

    @property
    def work_dir(self) -> Path:
        """Where page images live between stages."""
        return self.out_dir / ".work"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.out_dir / 'ocrflow.sqlite3').resolve()}"
