"""The one case folding (models/text.py)."""

from __future__ import annotations

import unicodedata

import pytest

from models.text import fold, fold_document


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Straße", "STRASSE"),
        ("ΟΔΥΣΣΕΥΣ", "οδυσσευς"),  # capital sigma, final sigma: one letter folded
        (unicodedata.normalize("NFD", "Zoë"), "ZOË"),
        ("İstanbul", "i̇stanbul"),  # dotted capital I folds to i + combining dot
    ],
)
def test_names_equal_under_folding_fold_to_one_key(left: str, right: str) -> None:
    assert fold(left) == fold(right)
    assert fold(left) == unicodedata.normalize("NFC", fold(left))


def test_different_names_stay_different() -> None:
    assert fold("Anna") != fold("Anne")
    assert fold("Istanbul") != fold("İstanbul")


def test_a_document_folds_everything_but_its_case_exact_paths() -> None:
    document = {
        "userName": "ÅSA",
        "externalId": "AbC",
        "emails": [{"value": "A@B.test", "type": "Work", "primary": True}],
        "urn:x:Ext": {"manager": {"value": "ID-1", "displayName": "Bo"}},
    }
    folded = fold_document(document, {("externalid",), ("urn:x:ext", "manager", "value")})
    assert folded == {
        "userName": "åsa",
        "externalId": "AbC",
        "emails": [{"value": "a@b.test", "type": "work", "primary": True}],
        "urn:x:Ext": {"manager": {"value": "ID-1", "displayName": "bo"}},
    }
