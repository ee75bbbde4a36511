"""The Files and Batches endpoints of the loopback fake (OpenAI-compatible mode), and uploads.

:class:`FakeDashScope` mounts :class:`BatchService`; the real ``openai`` SDK drives it
(``client.files.create(purpose="batch")``, ``client.batches.create(...)``,
``client.batches.retrieve``/``list``, ``client.files.content``). A batch is run when it is
polled: it answers ``validating`` and then ``in_progress`` for ``polls_to_finish`` retrievals,
then runs every line of its input file through the fake's chat-completions answer (so queued
faults fail single lines: partial failures) and ends ``completed``, or ``expired`` with
``expire_after`` lines answered and the rest in the error file, as the 24 h window does.

DashScope's temporary storage for the SDK's local-file upload is here too: ``getPolicy`` and
the form upload that ``dashscope.utils.oss_utils.OssUtils.upload`` makes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]
"""Runs one chat-completions body: (HTTP status, response body)."""


def parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body as field name -> (file name, bytes)."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    status: str = "validating"
    polls: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    created_at: int = field(default_factory=lambda: int(time.time()))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "request_counts": dict(self.counts),
            "metadata": self.metadata,
        }


class BatchService:
    """Files and batches kept in memory; every method returns (status, body)."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}
        self.uploads: dict[str, bytes] = {}
        """DashScope temporary-storage uploads by object key."""
        self.polls_to_finish = 1
        """Retrievals a batch answers as still running before it finishes."""
        self.expire_after: int | None = None
        """When set, a batch expires after answering this many of its lines."""
        self.created = 0
        """Batches created, for tests that check nothing is submitted twice."""
        self.stall_create: float | None = None
        """Hold batch creations this many seconds, then drop them (a caller killed meanwhile never
        learns the outcome; nothing is created). ``create_started`` is set when one arrives."""
        self.create_started = threading.Event()
        self._lock = threading.Lock()

    # --- files -------------------------------------------------------------------------------

    def create_file(self, content_type: str, raw: bytes) -> tuple[int, Any]:
        fields = parse_multipart(content_type, raw)
        if "file" not in fields:
            return 400, _error("invalid_request_error", "no file in the upload")
        filename, data = fields["file"]
        purpose = fields.get("purpose", (None, b""))[1].decode()
        if purpose != "batch":
            return 400, _error("invalid_request_error", f"purpose must be 'batch', not {purpose!r}")
        stored = StoredFile(f"file-batch-{uuid.uuid4().hex[:16]}", filename or "upload.jsonl", purpose, data)
        with self._lock:
            self.files[stored.id] = stored
        return 200, stored.describe()

    def list_files(self) -> tuple[int, Any]:
        with self._lock:
            data = [stored.describe() for stored in self.files.values()]
        return 200, {"object": "list", "data": data, "has_more": False}

    def file(self, file_id: str, *, content: bool = False) -> tuple[int, Any]:
        stored = self.files.get(file_id)
        if stored is None:
            return 404, _error("invalid_request_error", f"no file {file_id}")
        return 200, stored.data if content else stored.describe()

    def delete_file(self, file_id: str) -> tuple[int, Any]:
        with self._lock:
            stored = self.files.pop(file_id, None)
        if stored is None:
            return 404, _error("invalid_request_error", f"no file {file_id}")
        return 200, {"id": file_id, "object": "file", "deleted": True}

    # --- batches -----------------------------------------------------------------------------

    def create_batch(self, body: dict[str, Any]) -> tuple[int, Any]:
        if self.stall_create is not None:
            self.create_started.set()
            time.sleep(self.stall_create)
            return 503, _error("server_error", "the request was dropped")
        input_file_id = body.get("input_file_id")
        if input_file_id not in self.files:
            return 400, _error("invalid_request_error", f"no input file {input_file_id}")
        if body.get("completion_window") != "24h" or body.get("endpoint") != "/v1/chat/completions":
            return 400, _error("invalid_request_error", "completion_window must be 24h, endpoint chat")
        batch = Batch(
            f"batch_{uuid.uuid4()}",
            input_file_id,
            body["endpoint"],
            body["completion_window"],
            body.get("metadata"),
        )
        batch.counts["total"] = len(self.files[input_file_id].data.splitlines())
        with self._lock:
            self.batches[batch.id] = batch
            self.created += 1
        return 200, batch.describe()

    def list_batches(self, query: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            batches = sorted(self.batches.values(), key=lambda b: b.created_at, reverse=True)
        after = query.get("after")
        if after:
            ids = [batch.id for batch in batches]
            batches = batches[ids.index(after) + 1 :] if after in ids else []
        limit = int(query.get("limit", 20))
        page = batches[:limit]
        return 200, {
            "object": "list",
            "data": [batch.describe() for batch in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(batches) > limit,
        }

    def retrieve_batch(self, batch_id: str) -> tuple[int, Any]:
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, _error("invalid_request_error", f"no batch {batch_id}")
        with self._lock:
            if batch.status in ("validating", "in_progress"):
                batch.polls += 1
                if batch.polls > self.polls_to_finish:
                    self._run(batch)
                else:
                    batch.status = "in_progress"
            return 200, batch.describe()

    def cancel_batch(self, batch_id: str) -> tuple[int, Any]:
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, _error("invalid_request_error", f"no batch {batch_id}")
        batch.status = "cancelled"
        return 200, batch.describe()

    def _run(self, batch: Batch) -> None:
        outputs, errors = [], []
        lines = [
            json.loads(line) for line in self.files[batch.input_file_id].data.splitlines() if line.strip()
        ]
        for index, line in enumerate(lines):
            request_id = str(uuid.uuid4())
            if self.expire_after is not None and index >= self.expire_after:
                error = {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion window expired.",
                }
                errors.append(
                    {"id": request_id, "custom_id": line["custom_id"], "response": None, "error": error}
                )
                continue
            status, body = self._answer(line["body"])
            record = {
                "id": f"batch_req_{request_id}",
                "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": request_id, "body": body},
                "error": None,
            }
            if status == 200:
                outputs.append(record)
            else:
                record["error"] = {
                    "code": body.get("error", {}).get("code"),
                    "message": body.get("error", {}).get("message"),
                }
                errors.append(record)
        batch.counts.update(completed=len(outputs), failed=len(errors))
        batch.output_file_id = self._result_file(batch, "output", outputs)
        batch.error_file_id = self._result_file(batch, "error", errors)
        batch.status = (
            "expired" if self.expire_after is not None and len(lines) > self.expire_after else "completed"
        )

    def _result_file(self, batch: Batch, kind: str, records: list[dict[str, Any]]) -> str | None:
        if not records:
            return None
        data = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode()
        stored = StoredFile(
            f"file-batch_{kind}-{uuid.uuid4().hex[:16]}", f"{batch.id}_{kind}.jsonl", "batch_output", data
        )
        self.files[stored.id] = stored
        return stored.id

    # --- DashScope temporary storage (the SDK's local-file upload) -----------------------------

    def upload_policy(self, upload_host: str) -> tuple[int, Any]:
        policy = {
            "policy": "fake-policy",
            "signature": "fake-signature",
            "upload_dir": f"dashscope-instant/{uuid.uuid4().hex}",
            "upload_host": upload_host,
            "expire_in_seconds": 300,
            "max_file_size_mb": 100,
            "capacity_limit_mb": 999999,
            "oss_access_key_id": "fake-access-key",
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }
        return 200, {"request_id": str(uuid.uuid4()), "output": policy, "data": policy}

    def store_upload(self, content_type: str, raw: bytes) -> tuple[int, Any]:
        fields = parse_multipart(content_type, raw)
        key = fields.get("key", (None, b""))[1].decode()
        if not key or "file" not in fields or fields.get("policy", (None, b""))[1] != b"fake-policy":
            return 400, {"code": "InvalidArgument", "message": "not a policy upload"}
        self.uploads[key] = fields["file"][1]
        return 200, {}


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}
