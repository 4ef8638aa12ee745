"""A self-powered text source: the LLM writes everyday sentences around seed words.

Seeds are content words ranked by how often they occur in WordNet's sense-tagged corpus
(`cntlist.rev` in Debian's `wordnet-base`), so the sentences cover common vocabulary rather than
the grammar's few hundred words. Each seed is asked for in two wordings; the answer's quoted
sentence (small instruct LLMs like to write `A person might say, "..."`) or its first sentence is
kept when it is speakable (`text_sources.speakable`), uses the seed, does not repeat itself and is
no assistant boilerplate. Generation is greedy, so the same LLM and seed give the same text.

Answers are appended to `<folder>/llm.jsonl` as they come (ids `seed#template`), so a killed run
continues where it stopped and a rerun costs nothing.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

from selfpowered.corpus.text_sources import WORDNET_DIR, _require, speakable
from selfpowered.jsonl import AppendLog, iter_jsonl

CHUNK = 256  # requests per engine call: what a kill can lose

TEMPLATES = (
    'Write one sentence that a person might say at home or at work, using the word "{word}". '
    "Reply with the sentence only.",
    'Give an example sentence with the word "{word}".',
)
BOILERPLATE = re.compile(r"\b(smollm|ai\b|assistant|example|sentence|the word)\b", re.IGNORECASE)


def seed_words(count: int, seed: int = 0, skip_most_common: int = 100, pool: int = 4000) -> list[str]:
    """`count` content words drawn (seeded) from the `pool` most frequent WordNet lemmas after the
    `skip_most_common` commonest (mostly light verbs the LLM turns into filler)."""
    _require(WORDNET_DIR / "cntlist.rev", "wordnet-base")
    counts: Counter = Counter()
    for line in (WORDNET_DIR / "cntlist.rev").read_text().splitlines():
        key, _, tagged = line.split()
        lemma = key.split("%")[0]
        if lemma.isalpha() and len(lemma) > 2:
            counts[lemma] += int(tagged)
    ranked = [word for word, _ in counts.most_common(skip_most_common + pool)][skip_most_common:]
    return random.Random(seed).sample(ranked, min(count, len(ranked)))


def extract_sentence(answer: str, word: str) -> str | None:
    """The usable sentence in an LLM answer about `word`, or None."""
    quoted = [q for q in re.findall(r'"([^"]+)"', answer) if len(q.split()) >= 5]
    candidate = max(quoted, key=len) if quoted else re.split(r"(?<=[.!?])\s", answer.strip())[0]
    sentence = speakable(candidate.strip())
    if sentence is None or BOILERPLATE.search(sentence) or word.lower() not in sentence.lower():
        return None
    words = sentence.lower().split()
    trigrams = Counter(zip(words, words[1:], words[2:]))
    if trigrams and trigrams.most_common(1)[0][1] > 1:  # "I'm going to ..., I'm going to ..."
        return None
    return sentence if sentence[-1] in ".!?" else sentence + "."


def llm_sentences(count: int, folder: str | Path, seed: int = 0, llm: str | None = None) -> list[str]:
    """`count` distinct LLM-written sentences (fewer if the seeds run out), resumable in `folder`.

    Seeds are asked for in a fixed order, a chunk at a time, until `count` sentences are kept; the
    result is the first `count` in that order, so a resumed run returns the same list."""
    from selfpowered.assets import DEFAULT_LLM
    from selfpowered.model.generation import HFGenerator
    from selfpowered.text.engines import GenerationRequest

    log = AppendLog(Path(folder) / "llm.jsonl")
    kept: dict[str, str | None] = {}
    for _, record, error in iter_jsonl(log.path):
        if not error:
            kept[record["id"]] = record["sentence"]
    requests = [
        GenerationRequest(f"{word}#{index}", template.format(word=word))
        for word in seed_words(4 * count, seed)
        for index, template in enumerate(TEMPLATES)
    ]
    engine = None
    sentences: list[str] = []
    try:
        for start in range(0, len(requests), CHUNK):
            chunk = requests[start : start + CHUNK]
            todo = [request for request in chunk if request.id not in kept]
            if todo:
                engine = engine or HFGenerator(llm or DEFAULT_LLM, max_new_tokens=48)
                for result in engine.generate(todo):
                    word = result.id.split("#")[0]
                    sentence = extract_sentence(result.text, word) if result.finish_reason == "stop" else None
                    log.append({"id": result.id, "answer": result.text, "sentence": sentence})
                    kept[result.id] = sentence
            sentences = list(dict.fromkeys(kept[r.id] for r in requests[: start + CHUNK] if kept.get(r.id)))
            if len(sentences) >= count:
                break
    finally:
        log.close()
    return sentences[:count]
