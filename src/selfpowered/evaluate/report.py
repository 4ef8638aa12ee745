"""report.md + report.json + PNG plots from `evaluate.run`'s results.

The markdown leads with one table (every system, every headline number, its cost), then the
detail per suite, the mechanism curves and answers side by side, so a reader sees the speech
anchor bias before reading any prose.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path

from selfpowered.atomic import atomic_write_text
from selfpowered.evaluate.cascade_report import content_tables, paraling_tables
from selfpowered.evaluate.report_figures import examples, plots
from selfpowered.evaluate.suites.ctc import ctc_tables
from selfpowered.evaluate.tables import fmt, table
from selfpowered.text.echo import ECHO_MAX_WER


def _machine() -> str:
    import torch

    python = platform.python_version()
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, Python {python}"


def headline(row: dict) -> dict:
    """The numbers of the summary table for one system (None where a suite did not run)."""
    get = lambda suite, key: row.get(suite, {}).get(key) if isinstance(row.get(suite), dict) else None  # noqa: E731
    cost = row.get("cost", {}).get("instruct") or row.get("cost", {}).get("asr") or {}
    out = {
        "asr_wer": get("asr", "wer"),
        "echo_rate": get("instruct", "echo_rate"),
        "consistency_chrf": get("instruct", "consistency_chrf"),
        "task_check": get("instruct", "task_check"),
        "conflict_follows_text": get("conflict", "follows_text"),
        "conflict_follows_speech": get("conflict", "follows_speech"),
        "sqa_accuracy": get("sqa", "accuracy"),
        "text_chrf_vs_base": get("text", "chrf_vs_base"),
        "ifrate": get("ifeval", "prompt_strict"),
        "ifeval_delta_vs_text": ((row.get("ifeval") or {}).get("vs_text") or {}).get("strict", {}).get("delta_vs_text"),
        "loop_rate": get("instruct", "loop_rate"),
        "content_chrf": get("content", "consistency_chrf"),
        "content_check": get("content", "task_check"),
        "content_echo": get("content", "echo_rate"),
        "paraling_accuracy": get("paraling", "accuracy"),
        "paraling_choice_accuracy": get("paraling-choice", "accuracy"),
        "seconds_per_answer": cost.get("seconds_per_answer"),
        "real_time_factor": cost.get("real_time_factor"),
    }
    for suite in row:  # out-of-domain sets: WER and self-echo beside the in-domain numbers
        if suite.startswith("asr@"):
            out[f"wer_{suite[4:]}"] = get(suite, "wer")
        if suite.startswith("instruct@"):
            out[f"self_echo_{suite[9:]}"] = get(suite, "self_echo_rate")
    return out


def headlines(results: dict) -> dict[str, dict]:
    """Per system, the headline numbers that were measured (for a terminal summary)."""
    return {name: {k: v for k, v in headline(row).items() if v is not None} for name, row in results["systems"].items()}


HEADERS = {
    "asr_wer": "ASR WER ↓",
    "echo_rate": "echo rate ↓",
    "consistency_chrf": "consistency chrF ↑",
    "task_check": "task check ↑",
    "conflict_follows_text": "conflict: text wins ↑",
    "conflict_follows_speech": "conflict: speech wins",
    "sqa_accuracy": "SQA acc ↑",
    "text_chrf_vs_base": "text chrF vs base ↑",
    "ifrate": "IFrate ↑",
    "ifeval_delta_vs_text": "IF delta vs text ↑",
    "loop_rate": "loop rate ↓",
    "content_chrf": "untrained tasks: chrF ↑",
    "content_check": "untrained tasks: check ↑",
    "content_echo": "untrained tasks: echo ↓",
    "paraling_accuracy": "paraling acc ↑",
    "paraling_choice_accuracy": "paraling acc, likeliest option ↑",
    "seconds_per_answer": "s / answer",
    "real_time_factor": "RTF",
}


def _summary_table(results: dict) -> list[str]:
    keys: dict[str, None] = {}
    for row in results["systems"].values():
        keys.update(dict.fromkeys(headline(row)))
    header = [HEADERS.get(key) or key.replace("_", " ").replace("wer ", "WER ") for key in keys]
    one_decimal = {"consistency_chrf", "text_chrf_vs_base", "content_chrf"}
    rows = []
    for name, row in results["systems"].items():
        numbers = headline(row)
        rows.append([f"{name} ({row['kind']})", *(fmt(numbers.get(k), 1 if k in one_decimal else 3) for k in keys)])
    return table(["system", *header], rows)


def _ood_tables(results: dict) -> list[str]:
    """Per out-of-domain set: WER, both echo rates and consistency per system; WER per speaker."""
    sets = [info["data"] for name, info in results["suites"].items() if info.get("kind") == "asr" and "@" in name]
    if not sets:
        return []
    lines = [
        "## Out of domain: other text sources, unseen voices, real speech",
        "",
        "Sets outside the training domain (`ood_sets`). **self-echo** = the answer to a non-ASR instruction "
        f"is the same system's own transcription of that audio (normalised WER <= {ECHO_MAX_WER}): the speech "
        "anchor bias, still measurable when the transcription is wrong; **echo** compares with the true "
        "transcript. The cascade's WER is Whisper's.",
        "",
    ]
    for data in sets:
        asr, instruct = f"asr@{data}", f"instruct@{data}"
        rows = []
        for name, row in results["systems"].items():
            a, i = row.get(asr, {}), row.get(instruct, {})
            cells = (a.get("wer"), _miss_rate(a), a.get("cer"))
            counts = (str(a[key]) if key in a else "-" for key in ("substitutions", "deletions", "insertions"))
            rates = (i.get("echo_rate"), i.get("self_echo_rate"), i.get("task_check"))
            chrf = fmt(i.get("consistency_chrf"), 1)
            rows.append([name, *(fmt(v) for v in cells), *counts, *(fmt(v) for v in rates), chrf])
        n = results["suites"][asr]["n"]
        lines += [f"### `{data}` ({n} utterances)", ""]
        header = ["system", "WER", "miss", "CER", "S", "D", "I", "echo", "self-echo", "task check", "consistency chrF"]
        lines += table(header, rows)
        with_asr = {name: row[asr] for name, row in results["systems"].items() if asr in row}
        speakers = sorted({s for r in with_asr.values() for s in r.get("wer_per_speaker", {})})
        rows = [[s, *(fmt(r.get("wer_per_speaker", {}).get(s)) for r in with_asr.values())] for s in speakers]
        lines += ["", "WER per speaker:", ""] + table(["speaker", *with_asr], rows) + [""]
        recall = {name: r["word_recall"] for name, r in with_asr.items() if "word_recall" in r}
        if recall:
            rows = [[name, *(f"{fmt(r[k]['recall'])} ({r[k]['words']})" for k in ("seen", "unseen"))]
                    for name, r in recall.items()]  # fmt: skip
            lines += ["Word recall: words of the training transcripts (seen) vs the rest (unseen):", ""]
            lines += table(["system", "seen (words)", "unseen (words)"], rows) + [""]
    return lines


def _miss_rate(asr: dict) -> float | None:
    """(S + D) / N of an asr result; computed from its counts for reports saved before it was stored."""
    if "miss_rate" in asr:
        return asr["miss_rate"]
    if asr.get("reference_words"):
        return (asr["substitutions"] + asr["deletions"]) / asr["reference_words"]
    return None


def _triple(block: dict) -> str:
    return f"{fmt(block['echo_rate'], 2)} / {fmt(block['consistency_chrf'], 1)} / {fmt(block['task_check'], 2)}"


def _instruct_tables(results: dict) -> list[str]:
    systems = {n: r["instruct"] for n, r in results["systems"].items() if "instruct" in r}
    if not systems:
        return []
    first = next(iter(systems.values()))
    lines = ["## Instruction following (instruct suite)", ""]
    lines.append(
        "Held-out speech x non-ASR instructions. **echo** = the answer is the transcript "
        f"(normalised WER <= {ECHO_MAX_WER}, the speech anchor bias); **chrF** = speech-text consistency with "
        "the LLM's own text-mode answer to the true transcript (the self-powered target); "
        "**check** = the task's own rule:"
    )
    lines += [f"- {task}: {rule}" for task, rule in first["checks"].items()]
    rows = [
        [task, str(block["n"]), *(_triple(r["per_task"][task]) for r in systems.values())]
        for task, block in first["per_task"].items()
    ]
    rows += [
        [f"*{wording} wording*", str(block["n"]), *(_triple(r["per_wording"][wording]) for r in systems.values())]
        for wording, block in first["per_wording"].items()
    ]
    lines += [""] + table(["task", "n", *(f"{s} echo / chrF / check" for s in systems)], rows)
    bleu = [(task, b) for task, b in first["per_task"].items() if "bleu" in b]
    for task, block in bleu:
        lines.append(
            f"\nBLEU ({task}, sacreBLEU tokenizer `{block['bleu_tokenizer']}`, vs the text-mode answer): "
            + ", ".join(f"{s} {fmt(r['per_task'][task].get('bleu'), 1)}" for s, r in systems.items())
        )
    return lines + [""]


def _asrtable(results: dict) -> list[str]:
    systems = {n: r["asr"] for n, r in results["systems"].items() if "asr" in r}
    if not systems:
        return []
    lines = [
        "## ASR (asr suite)",
        "",
        "WER and CER after the Whisper English normaliser (jiwer). **miss** = (S + D) / N, the share of "
        "reference words not recovered: it leaves insertions out, so words said inside chatter still count.",
        "",
    ]
    counts = ("substitutions", "deletions", "insertions", "reference_words")
    rows = [
        [
            name,
            fmt(r["wer"]),
            fmt(_miss_rate(r)),
            fmt(r["cer"]),
            *(str(r[key]) for key in counts),
            fmt(r["wer_mean_over_templates"]),
        ]
        for name, r in systems.items()
    ]
    lines += table(["system", "WER", "miss", "CER", "S", "D", "I", "ref words", "mean over templates"], rows)
    templates = list(next(iter(systems.values()))["wer_per_template"])
    rows = [[t, *(fmt(r["wer_per_template"].get(t)) for r in systems.values())] for t in templates]
    return lines + [""] + table(["template", *systems], rows) + [""]


def _ifeval_tables(results: dict) -> list[str]:
    scores = {n: r["ifeval"] for n, r in results["systems"].items() if "ifeval" in r}
    if not scores:
        return []
    first = next(iter(scores.values()))
    lines = [
        "## Verifiable instruction following (ifeval suite)",
        "",
        f"{first['n']} held-out utterances, each with a task about the speech plus one or two verifiable "
        "constraints (IFEval's: word limits, case, bullets, JSON, end phrase, commas, keywords from the speech...) "
        "in wordings never trained on; scored by lm-eval's IFEval checkers. **IFrate** = share of items whose "
        "every constraint holds (prompt level); **delta** = (IFrate - IFrate of the LLM in text mode) / IFrate "
        "of text mode (Speech-IFEval's forgetting rate; 0 = nothing lost). 95% bootstrap intervals over items.",
        "",
    ]
    rows = []
    for name, r in scores.items():
        versus = (r.get("vs_text") or {}).get("strict") or {}
        interval = versus.get("delta_95ci") or (None, None)
        cells = [fmt(r["prompt_strict"]), fmt(r["prompt_loose"]), fmt(r["inst_strict"]), fmt(r["inst_loose"])]
        ci = versus.get("ifrate_95ci") or (None, None)
        rows.append([name, *cells, f"{fmt(ci[0])} - {fmt(ci[1])}", fmt(versus.get("delta_vs_text")),
                     f"{fmt(interval[0])} - {fmt(interval[1])}"])  # fmt: skip
    header = ["system", "IFrate strict", "IFrate loose", "inst strict", "inst loose", "IFrate 95% CI"]
    lines += table([*header, "delta vs text (strict)", "delta 95% CI"], rows)
    constraints = sorted({c for r in scores.values() for c in r["per_constraint"]})
    rows = [
        [c, str(first["per_constraint"].get(c, {}).get("n", "-")),
         *(fmt(r["per_constraint"].get(c, {}).get("strict")) for r in scores.values())]
        for c in constraints
    ]  # fmt: skip
    gaps = (results.get("ifeval_gaps") or {}).get("strict") or []
    if gaps:
        lines += [
            "",
            "Between systems (strict): **gap** = delta of one minus delta of the other = their IFrate difference "
            "over text mode's IFrate, with a paired bootstrap interval over the same items (the comparison a "
            '"delta at least N points above" target is about):',
            "",
        ]
        lines += table(
            ["system", "over", "gap", "gap 95% CI"],
            [
                [g["system"], g["over"], fmt(g["gap"]), f"{fmt(g['gap_95ci'][0])} - {fmt(g['gap_95ci'][1])}"]
                for g in gaps
            ],
        )
    return (
        lines
        + ["", "Instruction-level strict accuracy per constraint type:", ""]
        + table(["constraint", "n", *scores], rows)
        + [""]
    )


def _probe_tables(results: dict) -> list[str]:
    lines: list[str] = []
    conflict = {n: r["conflict"] for n, r in results["systems"].items() if "conflict" in r}
    if conflict:
        lines += [
            "## Conflict probe (spoken command vs text instruction)",
            "",
            'The speech says a command (e.g. "Please count from one to five."), the text instruction asks for a '
            "different task whose check cannot pass by accident (sentiment, translation or keywords). "
            "Verdict per answer: obeys the voice (checked first), repeats it (echo), passes the text task's "
            "check, or neither.",
            "",
        ]
        verdicts = ("follows_text", "follows_speech", "echo", "neither")
        rows = [[name, *(fmt(r[key]) for key in verdicts)] for name, r in conflict.items()]
        lines += table(["system", *(v.replace("_", " ") for v in verdicts)], rows) + [""]
    sqa = {n: r["sqa"] for n, r in results["systems"].items() if "sqa" in r}
    if sqa:
        lines += [
            "## Spoken yes/no QA (sqa suite)",
            "",
            "A two-fact text context in the instruction, a spoken yes/no question (half yes). Chance = 0.5.",
            "",
        ]
        rows = [[n, fmt(r["accuracy"]), fmt(r["unparsed"]), fmt(r["yes_rate"])] for n, r in sqa.items()]
        lines += table(["system", "accuracy", "unparsed", "says yes"], rows) + [""]
    text = {n: r["text"] for n, r in results["systems"].items() if "text" in r}
    if text:
        lines += [
            "## Text ability kept (text suite)",
            "",
            f"{next(iter(text.values()))['n']} text-only prompts through each LSM's LLM with its adapter vs the "
            "base LLM (adapter off), same decoding.",
            "",
        ]
        rows = [[n, fmt(r["exact_match"]), fmt(r["chrf_vs_base"], 1)] for n, r in text.items()]
        lines += table(["system", "exact match", "chrF vs base"], rows) + [""]
    return lines


def _biastable(results: dict) -> list[str]:
    bias = {n: r["bias"] for n, r in results["systems"].items() if "bias" in r}
    if not bias:
        return []
    lines = [
        "## Mechanism: where answer tokens look (bias suite)",
        "",
        "Mean share, over layers and samples, of attention and of saliency |A * dL/dA| that answer-predicting "
        "positions give to speech, the text instruction and the rest (template, answer so far). "
        "Per-layer curves with +-1 std over samples: `bias.png`.",
        "",
    ]
    groups = ("speech", "instruction", "rest")
    header = ["system", "samples", *(f"attn {g}" for g in groups), *(f"saliency {g}" for g in groups)]
    rows = [
        [
            name,
            str(b["samples"]),
            *(fmt(b[kind][g]["mean"]) for kind in ("attention", "saliency") for g in groups),
            fmt(b["saliency"]["speech_to_instruction"], 2),
        ]
        for name, b in bias.items()
    ]
    lines += table([*header, "saliency speech / instruction"], rows)
    return lines + ["", "![attention and saliency per layer](bias.png)", ""]


def write_report(results: dict, out: str | Path) -> Path:
    """Write report.json, the plots and report.md into `out`; returns the markdown's path."""
    out = Path(out)
    results["machine"] = _machine()
    results["date"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    atomic_write_text(out / "report.json", json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    made = plots(results, out)
    settings = results["settings"]
    lines = [
        "# selfpowered evaluation report",
        "",
        f"{results['date']} on {results['machine']}; {results['seconds']} s wall "
        f"({len(results['cached'])} system/suite answer sets reused from the cache).  ",
        f"Data: `{settings['data']}` ({settings['limit']} utterances drawn with seed {settings['seed']}); "
        f"tasks `{settings['tasks']}` + held-out wording `{settings['heldout_tasks']}`; probes spoken by "
        f"`{settings['probe_voice']}`. Decoding: greedy, max_new_tokens {settings['generation']['max_new_tokens']}"
        + (
            f", no repeated {settings['generation']['no_repeat_ngram_size']}-gram"
            if settings["generation"].get("no_repeat_ngram_size")
            else ""
        )
        + ", the same for every system.",
        "",
        "## Summary",
        "",
        *_summary_table(results),
        "",
        "Cost = seconds per answer and real-time factor on the instruct suite (audio in -> answer out, "
        "measured when the answers were made, batch size "
        f"{settings['generation']['batch_size']}). `text` is given the true transcript: it is the consistency "
        "upper bound (100 by construction) and has no audio cost; `cascade` = Whisper "
        f"`{settings['asr_model']}` -> the same LLM. The baselines' LLM decodes with our batched greedy loop "
        "(augment's HFGenerator, finished rows dropped), the LSMs through the serving engine (LoRA merged, "
        "KV cache, continuous batching). Answers reused from the cache keep the cost measured when they "
        "were made; the cost of a run sharing its cores with another job is not comparable "
        "(`bench/serve.py` measures latency on an idle machine).",
        "",
    ]
    if "instruct.png" in made:
        lines += ["![echo rate and consistency per task](instruct.png)", ""]
    lines += _asrtable(results) + _instruct_tables(results) + _ood_tables(results) + _ifeval_tables(results)
    lines += content_tables(results) + paraling_tables(results)
    lines += _probe_tables(results) + _biastable(results) + ctc_tables(results)
    if results.get("cards"):
        from selfpowered.cards import summary_line

        lines += ["## What each checkpoint was trained on (data cards)", ""]
        lines += [f"- **{name}**: {summary_line(card)}" for name, card in results["cards"].items()] + [""]
    lines += examples(results)
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
