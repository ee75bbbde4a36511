"""Each engine's field accuracy on reviewed documents: ``ocrflow eval --from-reviews``.

A reviewer's approved or corrected values are ground truth; what the engine read when
the item was queued is the prediction. Rejected items have no truth and are left out;
a field empty both as read and as decided says nothing and is not counted, and neither is
a value a reviewer kept by override until another reviewer confirms it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ocrflow.store import ReviewItemRow


@dataclass
class EngineAccuracy:
    engine: str
    documents: int = 0
    documents_right: int = 0
    right: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    total: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def field_accuracy(self) -> dict[str, float]:
        return {name: self.right[name] / self.total[name] for name in sorted(self.total)}

    def overall(self) -> float | None:
        total = sum(self.total.values())
        return sum(self.right.values()) / total if total else None

    def summary(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "documents_all_right": self.documents_right,
            "field_accuracy": self.field_accuracy(),
            "fields": sum(self.total.values()),
            "accuracy": self.overall(),
        }


def _same(read: Any, truth: Any) -> bool:
    def norm(value: Any) -> str | None:
        return None if value is None or str(value).strip() == "" else str(value).strip()

    return norm(read) == norm(truth)


def review_accuracy(
    items: list[ReviewItemRow], unconfirmed: dict[int, set[str]] | None = None
) -> dict[str, EngineAccuracy]:
    """Accuracy by engine over decided items that have ground truth.

    ``unconfirmed`` names, by item, the overridden fields that are no ground truth yet.
    """
    unconfirmed = unconfirmed or {}
    engines: dict[str, EngineAccuracy] = {}
    for item in items:
        if item.final_values is None:
            continue
        name = item.engine or "unknown"
        scores = engines.setdefault(name, EngineAccuracy(name))
        read = item.extracted_values or {}
        scores.documents += 1
        all_right = True
        for field_name in sorted(set(read) | set(item.final_values)):
            if field_name in unconfirmed.get(item.id, ()):
                continue
            truth, found = item.final_values.get(field_name), read.get(field_name)
            if truth in (None, "") and found in (None, ""):
                continue
            scores.total[field_name] += 1
            if _same(found, truth):
                scores.right[field_name] += 1
            else:
                all_right = False
        scores.documents_right += all_right
    return engines
