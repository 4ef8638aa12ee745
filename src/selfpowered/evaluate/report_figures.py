"""The report's pictures and examples: the instruct / bias plots (PNG) and answers side by side."""

from __future__ import annotations

from pathlib import Path

from selfpowered.atomic import atomic_file
from selfpowered.evaluate.tables import cell, table


def examples(results: dict, count: int = 8) -> list[str]:
    lines: list[str] = []
    instruct = results["examples"].get("instruct")
    if instruct and "instruct" in results["suites"]:
        suite = results["suites"]["instruct"]
        systems = [s for s in instruct if s != "reference"]
        lines += ["## Example answers (instruct suite, first of each task)", ""]
        shown: dict[str, int] = {}
        for i, meta in enumerate(suite["meta"]):
            if shown.get(meta["task"], 0) >= max(1, count // max(1, len({m["task"] for m in suite["meta"]}))):
                continue
            shown[meta["task"]] = shown.get(meta["task"], 0) + 1
            query = suite["queries"][i]
            lines += [
                f"**{meta['task']}** ({meta['wording']} wording) - instruction: *{cell(query['instruction'])}*  ",
                f'speech says: "{cell(query["transcript"])}"',
                "",
            ]
            rows = []
            if "reference" in instruct:
                rows.append(["reference (LLM on the transcript)", cell(instruct["reference"][i])])
            rows += [[s, cell(instruct[s][i])] for s in systems if s != "text"]
            lines += table(["system", "answer"], rows) + [""]
    conflict = results["examples"].get("conflict")
    if conflict and "conflict" in results["suites"]:
        suite = results["suites"]["conflict"]
        lines += ["## Example answers (conflict probe)", ""]
        for i in range(min(4, suite["n"])):
            query = suite["queries"][i]
            lines += [
                f'speech says: "{cell(query["transcript"])}" - text instruction: *{cell(query["instruction"])}*',
                "",
            ]
            verdicts = {s: results["systems"][s]["conflict"]["verdicts"][i] for s in conflict}
            rows = [[s, verdicts[s], cell(answers[i])] for s, answers in conflict.items()]
            lines += table(["system", "verdict", "answer"], rows) + [""]
    return lines


def plots(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    made = []
    systems = {n: r["instruct"] for n, r in results["systems"].items() if "instruct" in r}
    if systems:
        tasks = list(next(iter(systems.values()))["per_task"])
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        width = 0.8 / len(systems)
        for k, (name, r) in enumerate(systems.items()):
            x = np.arange(len(tasks)) + k * width
            axes[0].bar(x, [r["per_task"][t]["echo_rate"] for t in tasks], width, label=name)
            axes[1].bar(x, [r["per_task"][t]["consistency_chrf"] for t in tasks], width, label=name)
        for ax, title, limit in ((axes[0], "echo rate (lower is better)", 1.0), (axes[1], "consistency chrF", 100)):
            ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks)
            ax.set_title(title)
            ax.set_ylim(0, limit)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        with atomic_file(out / "instruct.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        made.append("instruct.png")
    bias = {n: r["bias"] for n, r in results["systems"].items() if "bias" in r}
    if bias:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=False)
        for ax, kind in zip(axes, ("attention", "saliency")):
            for name, b in bias.items():
                for group, style in (("speech", "-"), ("instruction", "--")):
                    mean = np.asarray(b[kind][group]["mean_per_layer"])
                    std = np.asarray(b[kind][group]["std_per_layer"])
                    layers = np.arange(len(mean))
                    (line,) = ax.plot(layers, mean, style, label=f"{name}: {group}")
                    ax.fill_between(layers, mean - std, mean + std, color=line.get_color(), alpha=0.15)
            ax.set_title(f"{kind} share of answer positions")
            ax.set_xlabel("layer")
            ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_file(out / "bias.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        made.append("bias.png")
    return made
