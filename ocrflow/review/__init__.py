"""The human-review queue: leases, decisions, the audit trail, and the web app over them.

- :mod:`.queue`: claim, release and decide items; every change is an audit event.
- :mod:`.decisions`: a decision turned into the document's final result.
- :mod:`.events`: the Prefect event ``ocrflow.review.completed``.
- :mod:`.auth`: reviewer accounts, sessions and CSRF tokens.
- :mod:`.suggestions`: checksum repairs offered to the reviewer, never applied.
- :mod:`.app`: the server-rendered FastAPI app (``ocrflow review serve``).
"""
