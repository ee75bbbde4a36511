"""Field confidence is made from evidence in one place; each piece of evidence moves it its way."""

from __future__ import annotations

from ocrflow.confidence import checks_passed, weigh_api_field, weigh_own_field
from ocrflow.doctypes import load_doctypes
from ocrflow.models import FieldEvidence, Grounding

DOCTYPES = load_doctypes()


def confidence(outcome: Grounding, agreement: bool | None = None, checks=None, logprob=None, score=0.99):
    evidence = FieldEvidence(outcome=outcome, reader_score=score)
    return weigh_api_field(evidence, checks or {}, agreement, logprob)[0]


def test_grounding_and_agreement_raise_confidence_and_disagreement_lowers_it():
    grounded = confidence(Grounding.GROUNDED)
    assert confidence(Grounding.GROUNDED, agreement=True) > grounded > confidence(Grounding.UNVERIFIED)
    assert confidence(Grounding.GROUNDED, agreement=False) < grounded
    assert grounded > confidence(Grounding.NOT_FOUND) and confidence(Grounding.NOT_FOUND) < 0.9
    # A near reading by an unsure reader is its own misread as often as the model's.
    assert confidence(Grounding.NEAR, score=0.6) > confidence(Grounding.NEAR, score=0.99)


def test_a_passed_checksum_is_strong_evidence_and_a_pattern_weak():
    card = DOCTYPES["bank_card"].fields["card_number"]
    assert checks_passed("6222021234567894", card) == {"checksum": 1.0}
    assert checks_passed("6222021234567895", card) == {}
    base = confidence(Grounding.UNVERIFIED)
    assert confidence(Grounding.UNVERIFIED, checks={"checksum": 1.0}) - base > 5 * (
        confidence(Grounding.UNVERIFIED, checks={"pattern": 1.0}) - base
    )


def test_the_models_probability_replaces_the_prior_and_every_factor_is_recorded():
    sure = confidence(Grounding.UNVERIFIED, logprob=0.999)
    assert sure > confidence(Grounding.UNVERIFIED) > confidence(Grounding.UNVERIFIED, logprob=0.3)
    _, evidence = weigh_api_field(
        FieldEvidence(outcome=Grounding.GROUNDED, reader_score=0.97), {"pattern": 1.0}, True, 0.9
    )
    assert evidence.factors == {
        "prior": 0.9,
        "logprob": 0.9,
        "grounding": 1.0,
        "reader_score": 0.97,
        "agreement": 1.0,
        "pattern": 1.0,
    }


def test_the_embedded_engines_confidence_stays_its_ocr_score():
    located = FieldEvidence(outcome=Grounding.NEAR)
    value, evidence = weigh_own_field(0.93, located)
    assert value == 0.93 and evidence.factors == {"ocr_score": 0.93, "grounding": 0.0}
