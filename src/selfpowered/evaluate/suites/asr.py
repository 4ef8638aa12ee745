"""The `asr` suite: every utterance of each test set transcribed, the library's ASR wordings
taking turns; WER (with its parts), CER, WER per wording and per speaker."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from selfpowered.config.base import StrictModel
from selfpowered.corpus.manifest import ManifestRow
from selfpowered.corpus.quality import sample_rows
from selfpowered.errors import SelfPoweredError
from selfpowered.evaluate.intervals import _round
from selfpowered.evaluate.suites import IN_DOMAIN, Building, Query, Scoring, Suite, SuiteSpec, register_suite
from selfpowered.text.metrics import character_error_rate, normalize_english, recall_by_vocabulary, word_error_rate
from selfpowered.text.tasks import ASR_TASK, TaskLibrary


def set_rows(name: str, path: str, limit: int, seed: int) -> list[ManifestRow]:
    """`limit` rows drawn (seeded) from one test set's manifest."""
    data = Path(path)
    if not data.is_file():
        raise SelfPoweredError(f"{data}: evaluation manifest not found ({name} set)")
    return sample_rows(data, limit, seed)


def suffix(data: str) -> str:
    """`asr` for the in-domain set, `asr@ood` for the set called ood."""
    return "" if data == IN_DOMAIN else f"@{data}"


def asr_suite(rows: Sequence[ManifestRow], base: Path, library: TaskLibrary) -> Suite:
    """Every utterance once, the library's ASR templates taking turns (so each is scored)."""
    templates = library.task(ASR_TASK).templates
    queries, meta = [], []
    for i, row in enumerate(rows):
        index = i % len(templates)
        queries.append(Query(f"{row.id}#asr", str(row.audio_path(base)), templates[index], row.text, row.duration))
        meta.append({"template": index, "speaker": row.speaker or "?"})
    return Suite("asr", queries, meta)


def _wer_by(suite: Suite, refs: list[str], hypotheses: Sequence[str], key) -> dict:
    groups: dict = defaultdict(list)
    for i, item in enumerate(suite.meta):
        groups[key(i, item)].append(i)
    return {
        name: _round(word_error_rate([refs[i] for i in idx], [hypotheses[i] for i in idx]).wer)
        for name, idx in sorted(groups.items())
    }


def vocabulary_of(manifests: Sequence[str]) -> set[str]:
    """The normalised words of every transcript in these manifests or sample files (`text`, or a
    sample's `transcript`): what the models were trained to hear."""
    from selfpowered.jsonl import iter_jsonl

    words: set[str] = set()
    for path in manifests:
        if not Path(path).is_file():
            raise SelfPoweredError(f"{path}: asr.vocabulary file not found")
        for number, record, error in iter_jsonl(Path(path)):
            if error or not isinstance(record, dict):
                raise SelfPoweredError(f"{path}:{number}: asr.vocabulary: not a JSON object ({error or record!r})")
            words.update(normalize_english(str(record.get("transcript") or record.get("text") or "")).split())
    return words


def score_asr(suite: Suite, hypotheses: Sequence[str], vocabulary: set[str] | None = None) -> dict:
    """WER (with substitutions / deletions / insertions and the miss rate) and CER overall, WER per
    template and the mean over templates (the paper reports one number per prompt); with a
    vocabulary, the recall of seen and of unseen reference words."""
    refs = [q.transcript for q in suite.queries]
    overall = word_error_rate(refs, hypotheses)
    recall = {"word_recall": recall_by_vocabulary(refs, hypotheses, vocabulary)} if vocabulary else {}
    by_index = _wer_by(suite, refs, hypotheses, lambda i, item: item["template"])
    first = {item["template"]: i for i, item in reversed(list(enumerate(suite.meta)))}
    template_wer = {suite.queries[first[index]].instruction: wer for index, wer in by_index.items()}
    return {
        "n": len(refs),
        "wer": _round(overall.wer),
        "miss_rate": _round(overall.miss_rate),
        "cer": _round(character_error_rate(refs, hypotheses)),
        "substitutions": overall.substitutions,
        "deletions": overall.deletions,
        "insertions": overall.insertions,
        "reference_words": overall.reference_words,
        "wer_per_template": template_wer,
        "wer_mean_over_templates": _round(sum(template_wer.values()) / len(template_wer)),
        "wer_per_speaker": _wer_by(suite, refs, hypotheses, lambda i, item: item.get("speaker", "?")),
        **recall,
    }


class AsrOptions(StrictModel):
    tasks: str = Field("paper", description="task library whose `asr` wordings are asked (paper: the paper's five)")
    vocabulary: list[str] = Field(
        default_factory=list,
        description="training manifests or sample files: their transcripts' words are `seen`; adds the recall of "
        "seen and of unseen reference words per set",
    )


@register_suite
class Asr(SuiteSpec):
    name = "asr"
    summary = "transcription of every test set (in-domain and each ood set): WER, CER, per wording and speaker"
    Options = AsrOptions

    def build(self, building: Building, options: AsrOptions) -> dict[str, Suite]:
        library = TaskLibrary.load(options.tasks, building.settings.seed)
        suites = {}
        for data, path, limit in building.test_sets():
            rows = set_rows(data, path, limit, building.settings.seed)
            asr = asr_suite(rows, Path(path).parent, library)
            suites["asr" + suffix(data)] = Suite("asr" + suffix(data), asr.queries, asr.meta, "asr", data)
        return suites

    def score(self, suite: Suite, answers: Sequence[str], scoring: Scoring) -> dict:
        options = scoring.options.get(self.name) or AsrOptions()
        return score_asr(suite, answers, self._vocabulary(tuple(options.vocabulary)))

    @staticmethod
    @functools.cache
    def _vocabulary(paths: tuple[str, ...]) -> set[str] | None:
        return vocabulary_of(paths) if paths else None
