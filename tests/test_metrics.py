from __future__ import annotations

import pytest

from selfpowered.evaluate.metrics import normalize_english, word_error_rate


def test_normaliser_is_whispers():
    assert normalize_english("Mr. Dashwood, had TWENTY colours!") == "mister dashwood had 20 colors"


def test_wer_hand_checked():
    # ref 4 + 3 = 7 words; hyp 1: one substitution; hyp 2: one deletion + one insertion
    result = word_error_rate(["the cat sat down", "a red dog"], ["the cat sat up", "red dog barked"])
    assert (result.substitutions, result.deletions, result.insertions) == (1, 1, 1)
    assert result.reference_words == 7
    assert result.wer == pytest.approx(3 / 7)


def test_wer_ignores_case_and_punctuation_after_normalising():
    assert word_error_rate(["Hello, World."], ["hello world"]).wer == 0.0
    assert word_error_rate(["Hello, World."], ["hello world"], normalize=False).wer == 1.0


def test_wer_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])
