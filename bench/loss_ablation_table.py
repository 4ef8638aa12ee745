"""Issue 17's table and plot from one `eval` report over the ablation arms (bench/loss_ablation.sh).

    .venv/bin/python bench/loss_ablation_table.py --results bench/results/loss_ablation --arms asr ce kl ce_kl ce_ctc

Reads `eval.json` (the arms and the text baseline, one run) and each arm's `ARM.train_summary.json`,
writes `table.md` (the RESULTS table, targets checked) and `plot.png` (ASR WER vs consistency, the
target region shaded). The targets are issue 17's: ASR WER within 1.5x of the compute-matched
ASR-only arm (`asr`) AND consistency >= +5 chrF over the paper's cross-entropy arm (`ce`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

WER_RATIO = 1.5  # issue 17: within 1.5x of the ASR-only arm's WER
CHRF_GAIN = 5.0  # issue 17: +5 chrF over the CE self-powered arm


def _get(tree: dict, *keys, default=None):
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return default
        tree = tree[key]
    return tree


def arm_row(name: str, system: dict, summary: dict) -> dict:
    steps = summary.get("steps")
    seconds = summary.get("seconds")
    return {
        "arm": name,
        "wer": _get(system, "asr", "wer"),
        "echo": _get(system, "instruct", "echo_rate"),
        "self_echo": _get(system, "instruct", "self_echo_rate"),
        "chrf": _get(system, "instruct", "consistency_chrf"),
        "task": _get(system, "instruct", "task_check"),
        "conflict_text": _get(system, "conflict", "follows_text"),
        "ifrate": _get(system, "ifeval", "vs_text", "strict", "ifrate"),
        "if_delta": _get(system, "ifeval", "vs_text", "strict", "delta_vs_text"),
        "wer_ood": _get(system, "asr@ood", "wer"),
        "self_echo_ood": _get(system, "instruct@ood", "self_echo_rate"),
        "wer_real": _get(system, "asr@real", "wer"),
        "s_per_step": seconds / steps if seconds and steps else None,
        "steps": steps,
    }


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def verdicts(rows: list[dict]) -> dict[str, str]:
    """Per arm: does it meet both targets, and by how much it misses each."""
    by_arm = {r["arm"]: r for r in rows}
    asr, ce = by_arm.get("asr"), by_arm.get("ce")
    if not asr or not ce or asr["wer"] is None or ce["chrf"] is None:
        return {}
    wer_bound, chrf_bound = WER_RATIO * asr["wer"], ce["chrf"] + CHRF_GAIN
    out = {}
    for r in rows:
        if r["arm"] in ("asr", "ce"):
            out[r["arm"]] = "reference"
            continue
        wer_ok, chrf_ok = r["wer"] <= wer_bound, r["chrf"] >= chrf_bound
        parts = [
            f"WER {r['wer']:.3f} {'<=' if wer_ok else '>'} {wer_bound:.3f}"
            + ("" if wer_ok else f" (misses by {r['wer'] - wer_bound:.3f})"),
            f"chrF {r['chrf']:.1f} {'>=' if chrf_ok else '<'} {chrf_bound:.1f}"
            + ("" if chrf_ok else f" (misses by {chrf_bound - r['chrf']:.1f})"),
        ]
        out[r["arm"]] = ("**meets both**: " if wer_ok and chrf_ok else "misses: ") + "; ".join(parts)
    return out


def table(rows: list[dict], text: dict) -> str:
    head = (
        "| arm | ASR WER | echo | self-echo | consistency chrF | task check | conflict: text wins | IFrate | "
        "IF delta vs text | `ood` WER | `ood` self-echo | `real` WER | s / step |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        lines.append(
            f"| {r['arm']} | {_fmt(r['wer'])} | {_fmt(r['echo'])} | {_fmt(r['self_echo'])} | {_fmt(r['chrf'], 1)} | "
            f"{_fmt(r['task'])} | {_fmt(r['conflict_text'])} | {_fmt(r['ifrate'])} | {_fmt(r['if_delta'])} | "
            f"{_fmt(r['wer_ood'])} | {_fmt(r['self_echo_ood'])} | {_fmt(r['wer_real'])} | {_fmt(r['s_per_step'], 2)} |"
        )
    ifrate = _get(text, "ifeval", "vs_text", "strict", "ifrate") or _get(text, "ifeval", "prompt_strict")
    lines.append(
        f"| text mode (the LLM on the transcript) | - | {_fmt(_get(text, 'instruct', 'echo_rate'))} | - | "
        f"{_fmt(_get(text, 'instruct', 'consistency_chrf'), 1)} | {_fmt(_get(text, 'instruct', 'task_check'))} | "
        f"{_fmt(_get(text, 'conflict', 'follows_text'))} | {_fmt(ifrate)} | 0 | - | - | - | - |"
    )
    checks = verdicts(rows)
    by_arm = {r["arm"]: r for r in rows}
    if by_arm.get("asr", {}).get("if_delta") is not None:  # issue 16: delta >= the vanilla arm's + 20 points
        base = by_arm["asr"]["if_delta"]
        lines += ["", f"IF delta vs the ASR-only (vanilla) arm's {base:+.3f} (issue 16 target: >= +0.20):", ""]
        lines += [
            f"- `{r['arm']}`: {r['if_delta'] - base:+.3f}"
            for r in rows
            if r["arm"] != "asr" and r["if_delta"] is not None
        ]
    if checks:
        lines += ["", "Targets (vs `asr` for WER, vs `ce` for chrF):", ""]
        lines += [f"- `{arm}`: {verdict}" for arm, verdict in checks.items() if verdict != "reference"]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_arm = {r["arm"]: r for r in rows}
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if "asr" in by_arm and "ce" in by_arm:
        wer_bound, chrf_bound = WER_RATIO * by_arm["asr"]["wer"], by_arm["ce"]["chrf"] + CHRF_GAIN
        ax.axvspan(0, wer_bound, ymin=0, ymax=1, color="tab:green", alpha=0.06)
        ax.axvline(wer_bound, color="tab:green", ls="--", lw=1, label=f"WER <= {WER_RATIO}x asr arm")
        ax.axhline(chrf_bound, color="tab:blue", ls="--", lw=1, label=f"chrF >= ce arm + {CHRF_GAIN:g}")
    for r in rows:
        if r["wer"] is None or r["chrf"] is None:
            continue
        ax.scatter(r["wer"], r["chrf"], s=40)
        ax.annotate(r["arm"], (r["wer"], r["chrf"]), textcoords="offset points", xytext=(5, 4))
    ax.set_xlabel("in-domain ASR WER (lower is better)")
    ax.set_ylabel("consistency with the LLM's text answers, chrF")
    ax.set_title("Loss ablation at equal steps (issue 17)")
    ax.set_xlim(left=0)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="folder with eval.json and ARM.train_summary.json")
    parser.add_argument("--arms", nargs="+", required=True)
    args = parser.parse_args()
    report = json.loads((args.results / "eval.json").read_text())
    rows = []
    for arm in args.arms:
        summary_path = args.results / f"{arm}.train_summary.json"
        if arm not in report["systems"]:
            raise SystemExit(f"{args.results / 'eval.json'}: no system {arm!r} (have {', '.join(report['systems'])})")
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        rows.append(arm_row(arm, report["systems"][arm], summary))
    text = report["systems"].get("text", {})
    (args.results / "table.md").write_text(table(rows, text))
    plot(rows, args.results / "plot.png")
    print((args.results / "table.md").read_text())


if __name__ == "__main__":
    main()
