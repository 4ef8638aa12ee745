"""The report's sections that judge every LSM against the cascade it contains: the `content` suite
(task types the demo library never trains, on speech and voices never trained on) and the
`paraling` suite (what a transcript cannot carry), each number with its 95% interval."""

from __future__ import annotations

from selfpowered.evaluate.suites.paraling import CLOSED
from selfpowered.evaluate.tables import fmt, table


def _with_interval(value, interval, digits: int = 3) -> str:
    if value is None:
        return "-"
    if not interval or None in interval:
        return fmt(value, digits)
    return f"{fmt(value, digits)} ({fmt(interval[0], digits)}-{fmt(interval[1], digits)})"


def content_tables(results: dict) -> list[str]:
    systems = {name: row["content"] for name, row in results["systems"].items() if "content" in row}
    if not systems:
        return []
    data = results["suites"]["content"]["data"]
    lines = [
        "## Untrained task types (content suite): every LSM against the cascade it contains",
        "",
        f"Tasks the demo library never trains (translation into French, keyword lists, summaries, yes/no "
        f"questions about the content, and continuations / titles in new wordings), on the `{data}` set: speech, "
        "voices and text never trained on. Consistency is chrF against the LLM's own text-mode answer to the "
        "true transcript; echo = the answer is the transcript; loop = the answer repeats itself "
        "(text/loops.py). 95% bootstrap intervals over the items.",
        "",
    ]
    rows = []
    for name, block in systems.items():
        intervals = block.get("intervals") or {}
        rows.append(
            [
                name,
                _with_interval(block.get("consistency_chrf"), intervals.get("consistency_chrf_95ci"), 1),
                _with_interval(block.get("task_check"), intervals.get("task_check_95ci")),
                _with_interval(block.get("echo_rate"), intervals.get("echo_rate_95ci")),
                fmt(block.get("self_echo_rate")),
                fmt(block.get("loop_rate")),
            ]
        )
    lines += table(["system", "consistency chrF", "task check", "echo rate", "self-echo", "loop rate"], rows)
    tasks = sorted({task for block in systems.values() for task in block.get("per_task", {})})
    rows = []
    for task in tasks:
        cells = []
        for block in systems.values():
            per = block.get("per_task", {}).get(task, {})
            bleu = f" / BLEU {fmt(per.get('bleu'), 1)}" if per.get("bleu") is not None else ""
            cells.append(f"{fmt(per.get('consistency_chrf'), 1)} / {fmt(per.get('task_check'), 2)}{bleu}")
        rows.append([task, *cells])
    lines += ["", "Per task (consistency chrF / task check):", ""]
    return lines + table(["task", *systems], rows) + [""]


def paraling_tables(results: dict) -> list[str]:
    ways = (("paraling", "the answer decoded and parsed (it must name one option)"),
            (CLOSED, "the likeliest option (log-likelihood of each option as the answer's first words)"))  # fmt: skip
    blocks = {way: {name: row[way] for name, row in results["systems"].items() if way in row} for way, _ in ways}
    if not blocks["paraling"]:
        return []
    lines = [
        "## What a transcript cannot carry (paraling suite)",
        "",
        "Closed-option questions (options in the instruction, wordings never trained on) about clips whose "
        "labels are true by construction: the same sentence under both values of one attribute, voices held out "
        "of training, and real recordings with a tempo change, noise or a room applied. Chance is 0.5; a cascade "
        "or the text LLM above 0.6 would mean the words leak the answer. Accuracy (95% interval), each question "
        "answered two ways:",
        "",
    ]
    for way, label in ways:
        systems = blocks[way]
        sets = sorted({name for block in systems.values() for name in block.get("per_set", {})})
        for data in sets:
            attributes = sorted({a for block in systems.values() for a in block.get("per_set", {}).get(data, {})})
            rows = []
            for name, block in systems.items():
                per = block.get("per_set", {}).get(data, {})
                rows.append(
                    [name, *(_with_interval(per.get(a, {}).get("accuracy"), per.get(a, {}).get("accuracy_95ci"), 2)
                             for a in attributes)]
                )  # fmt: skip
            lines += [f"### {data}: {label}", ""] + table(["system", *attributes], rows) + [""]
    if blocks[CLOSED]:  # one value chosen for every clip means the model hears nothing of it
        attributes = sorted({a for block in blocks[CLOSED].values() for a in block.get("per_attribute", {})})
        rows = [[name, *(" / ".join(f"{value} {count}" for value, count in
                                    block["per_attribute"].get(a, {}).get("answered", {}).items()) or "-"
                         for a in attributes)]
                for name, block in blocks[CLOSED].items()]  # fmt: skip
        lines += ["How often each value was the likeliest option (all sets):", ""]
        lines += table(["system", *attributes], rows) + [""]
    rows = []
    for name, block in blocks["paraling"].items():
        for data, found in block.get("describe", {}).items():
            rows.append([name, data, str(found["n"]), fmt(found["two_right_none_wrong"]),
                         fmt(found["attributes_named"], 2)])  # fmt: skip
    if rows:
        lines += ['Open descriptions ("describe who is speaking and how the recording sounds"):', ""]
        header = ["system", "set", "n", "two attributes right, none wrong", "attributes named"]
        lines += table(header, rows) + [""]
    return lines
