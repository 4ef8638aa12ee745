from __future__ import annotations

import pytest

from selfpowered.text.metrics import normalize_english, word_error_rate


def test_normaliser_is_whispers():
    assert normalize_english("Mr. Dashwood, had TWENTY colours!") == "mister dashwood had 20 colors"


def test_wer_hand_checked():
    # ref 4 + 3 = 7 words; hyp 1: one substitution; hyp 2: one deletion + one insertion
    result = word_error_rate(["the cat sat down", "a red dog"], ["the cat sat up", "red dog barked"])
    assert (result.substitutions, result.deletions, result.insertions) == (1, 1, 1)
    assert result.reference_words == 7
    assert result.wer == pytest.approx(3 / 7)
    assert result.miss_rate == pytest.approx(2 / 7)  # the insertion is not a missed word


def test_miss_rate_ignores_chatter_around_the_right_words():
    result = word_error_rate(["go forward ten meters"], ["the speech says go forward ten meters okay"])
    assert (result.substitutions, result.deletions, result.insertions) == (0, 0, 4)
    assert result.wer == pytest.approx(1.0) and result.miss_rate == 0.0


def test_wer_ignores_case_and_punctuation_after_normalising():
    assert word_error_rate(["Hello, World."], ["hello world"]).wer == 0.0
    assert word_error_rate(["Hello, World."], ["hello world"], normalize=False).wer == 1.0


def test_wer_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])


# --- issue 6: every metric pinned on hand-checked cases ------------------------------------------
from selfpowered.text.metrics import (  # noqa: E402
    accuracy,
    bleu_tokenizer,
    character_error_rate,
    corpus_bleu,
    corpus_chrf,
    detect_language,
    parse_choice,
    parse_yes_no,
)


def test_cer_hand_checked():
    # "hello world" (11 characters) -> "hallo world": one substitution
    assert character_error_rate(["hello world"], ["hallo world"]) == pytest.approx(1 / 11)
    # normalised first: case and punctuation do not count
    assert character_error_rate(["Hello, world!"], ["hello world"]) == 0.0


def test_bleu_hand_checked():
    # precisions 5/6, 3/5, 2/4, 1/3, equal lengths (BP = 1): (5/6*3/5*1/2*1/3) ** (1/4) = 0.5373
    score = corpus_bleu(["the cat sat on a mat"], ["the cat sat on the mat"])
    assert score == pytest.approx(53.73, abs=0.01)
    assert corpus_bleu(["the cat sat on a mat"], ["the cat sat on a mat"]) == pytest.approx(100.0)


def test_bleu_uses_the_chinese_tokenizer_for_chinese():
    assert bleu_tokenizer("zh") == "zh" and bleu_tokenizer("fr") == "13a" and bleu_tokenizer("en") == "13a"
    ref, hyp = "我喜欢在公园里散步", "我喜欢在花园里散步"
    # zh splits characters: 8 of 9 characters match, so a partial score; 13a sees one "word" each: 0
    assert 0 < corpus_bleu([ref], [hyp], "zh") < 100
    assert corpus_bleu([ref], [hyp], "en") == 0.0


def test_chrf_bounds_and_order():
    assert corpus_chrf(["a sunny day at the beach"], ["a sunny day at the beach"]) == pytest.approx(100.0)
    assert corpus_chrf(["abc"], ["xyz"]) == 0.0
    close = corpus_chrf(["a sunny day at the beach"], ["a sunny day on the beach"])
    far = corpus_chrf(["a sunny day at the beach"], ["rain fell all night"])
    assert 50 < close < 100 and far < 20


@pytest.mark.parametrize(
    "answer, verdict",
    [
        ("Yes.", True),
        ("yes, he does", True),
        ("No, she keeps it in the garage.", False),
        ("True", True),
        ("False.", False),
        ("It is not true.", False),
        ("That is correct, Anna keeps a red kite.", True),
        ("The answer is no.", False),
        ("Anna does not keep a kite there.", False),
        ("Does Anna keep a red kite in the garage?", None),
        ("", None),
    ],
)
def test_yes_no_parser(answer, verdict):
    assert parse_yes_no(answer) is verdict


@pytest.mark.parametrize(
    "answer, choice",
    [
        ("B", 1),
        ("(C) because it rains", 2),
        ("A.", 0),
        ("The answer is D", 3),
        ("answer: b", 1),
        ("I would pick option C.", 2),
        ("It is Paris.", 1),  # names exactly one option's text
        ("A dog barked", None),  # an article, not a choice
        ("London or Paris", None),  # two options named
        ("nothing useful", None),
    ],
)
def test_choice_parser(answer, choice):
    assert parse_choice(answer, ["London", "Paris", "Rome", "Madrid"]) == choice


def test_accuracy_counts_unparsed_as_wrong():
    assert accuracy([True, None, False, True], [True, True, False, False]) == 0.5
    with pytest.raises(ValueError, match="2 predictions but 1 gold"):
        accuracy([True, False], [True])


@pytest.mark.parametrize(
    "text, language",
    [
        ("今天天气很好，我们去公园吧。", "zh"),
        ("The weather is nice and the park is open.", "en"),
        ("Le temps est beau et la ville est calme.", "fr"),
        ("Das Wetter ist schön und die Stadt ist ruhig.", "de"),
        ("El tiempo es bueno y la ciudad está tranquila.", "es"),
        ("Погода хорошая.", "ru"),
        ("今日はいい天気ですね。", "ja"),
        ("12345 !!!", "und"),
    ],
)
def test_language_id(text, language):
    assert detect_language(text) == language
