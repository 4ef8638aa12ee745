"""`selfpowered demo`: the paper's experiment on the embedded default, stage by stage.

Every stage is a public CLI command, run as a subprocess and printed first, so a user can copy any
of them. A finished stage leaves a marker in demo-output/.stages/ (command, seconds) and is reused
by the next run while its command is the same and its outputs are there (eval always runs: it
reuses its own cached answers and recomputes only systems whose checkpoint changed); `--fresh`
removes the markers and the stages' outputs and runs everything again.

The stages are data: a recipe, `configs/recipes/NAME.yaml` (or any file of that shape), lists them
as the commands a user would type.
- default: the `shipped` recipe: the two checkpoints in `checkpoints/demo/` (made by the open
  recipe) are evaluated on the demo test split, the out-of-domain sets and the paralinguistic
  test pairs.
- `--retrain`: the whole pipeline of `--recipe open` (default: the shipped checkpoints' recipe) or
  `grammar` (the paper's setting on one hand-written grammar, the earlier shipped checkpoints,
  which hear only their grammar), or a recipe file.

The run ends with the verdict: the issue's targets next to the measured numbers, pass or fail.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from selfpowered.atomic import atomic_write_text
from selfpowered.config import DemoConfig
from selfpowered.config.evaluation import Recipe
from selfpowered.corpus.importers.pocketsphinx import POCKETSPHINX_DATA
from selfpowered.errors import SelfPoweredError
from selfpowered.evaluate.suites.paraling import CLOSED

RECIPES = Path("configs/recipes")  # NAME.yaml per recipe, read from the repository root


@dataclass
class Stage:
    name: str
    args: list[str]  # after `selfpowered`
    outputs: list[Path] = field(default_factory=list)  # removed by --fresh
    # eval caches its answers per (system, suite) keyed by the checkpoint files, so it always runs:
    # a rerun costs seconds and picks up a changed checkpoint, which a marker would hide
    always_run: bool = False

    @property
    def command(self) -> str:
        return "selfpowered " + shlex.join(self.args)


def load_recipe(name_or_path: str) -> Recipe:
    """A recipe by name (configs/recipes/NAME.yaml) or a YAML file of that shape."""
    from selfpowered.config.loading import load_config

    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPES / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml"))) or "none found"
            raise SelfPoweredError(
                f"no recipe {name_or_path!r} in {RECIPES}/ (known: {known}); run from the repository root, or give "
                "a recipe file"
            )
    return load_config(Recipe, path)


def recipe_stages(recipe: Recipe, checkpoints: Path) -> list[Stage]:
    """The recipe's stages with `{checkpoints}` and `{pocketsphinx}` filled in."""
    values = {"{checkpoints}": str(checkpoints), "{pocketsphinx}": str(POCKETSPHINX_DATA)}

    def fill(text: str) -> str:
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    return [
        Stage(stage.name, shlex.split(fill(stage.run)), [Path(fill(o)) for o in stage.outputs], stage.always_run)
        for stage in recipe.stages
    ]


def _remove(path: Path) -> None:
    """A stage output: a folder, or a samples file with its `.rejects` / `.stats` companions."""
    if path.is_dir():
        shutil.rmtree(path)
        return
    for file in path.parent.glob(path.stem + ".*"):
        file.unlink()


def _finished(stage: Stage, marker: Path) -> bool:
    """A stage is reused when its marker records the same command and every output it declares is
    still there (one deleted by hand - a checkpoint folder, a sound tagger - makes it run again)."""
    if stage.always_run or not marker.is_file():
        return False
    return json.loads(marker.read_text()).get("command") == stage.command and all(p.exists() for p in stage.outputs)


def run_demo(
    config: DemoConfig | None = None,
    echo: Callable[[str], None] = print,
    runner: Callable[[list[str]], int] | None = None,
) -> dict:
    """Run (or reuse) every stage, then write and return the verdict. `runner` runs one CLI
    command (default: a `selfpowered` subprocess) and returns its exit code."""
    config = config or DemoConfig()
    retrain, fresh, eval_config = config.retrain, config.fresh, config.eval_config
    shipped = Path(config.checkpoints)
    if config.recipe != "open" and not retrain:
        raise SelfPoweredError(
            f"recipe {config.recipe!r} needs --retrain: the shipped checkpoints are the open recipe's"
        )
    if not retrain and not all((shipped / arm / "config.json").is_file() for arm in ("vanilla", "selfpowered")):
        raise SelfPoweredError(
            f"{shipped}: the shipped demo checkpoints (vanilla/, selfpowered/) are missing; "
            "run from the repository root, or rebuild them with `selfpowered demo --retrain`"
        )
    if not Path(eval_config).is_file():
        raise SelfPoweredError(f"{eval_config}: evaluation config not found (run from the repository root)")
    recipe = load_recipe(config.recipe if retrain else "shipped")
    runner = runner or _subprocess
    markers = Path("demo-output") / ".stages"
    stages = recipe_stages(recipe, shipped)
    root = Path(recipe.root)  # where its eval, summary and verdict go
    if fresh:
        for stage in stages:
            for path in stage.outputs:
                _remove(path)
            (markers / f"{stage.name}.json").unlink(missing_ok=True)
    timings: dict[str, dict] = {}
    started = time.perf_counter()
    for number, stage in enumerate(stages, start=1):
        marker = markers / f"{stage.name}.json"
        if _finished(stage, marker):
            timings[stage.name] = {**json.loads(marker.read_text()), "reused": True}
            echo(f"[{number}/{len(stages)}] {stage.name}: done before, reused ({stage.command})")
            continue
        echo(f"[{number}/{len(stages)}] {stage.name}\n$ {stage.command}")
        stage_start = time.perf_counter()
        code = runner(stage.args)
        if code != 0:
            raise SelfPoweredError(f"demo stage {stage.name} failed (exit {code}): {stage.command}")
        record = {"command": stage.command, "seconds": round(time.perf_counter() - stage_start, 1)}
        atomic_write_text(marker, json.dumps(record) + "\n")
        timings[stage.name] = {**record, "reused": False}
    verdict = demo_verdict(json.loads((root / "eval" / "report.json").read_text()))
    summary = {
        "mode": f"retrain, recipe {recipe.name}" if retrain else "shipped checkpoints",
        "stages": timings,
        "wall_seconds_this_run": round(time.perf_counter() - started, 1),
        "verdict": verdict,
    }
    atomic_write_text(root / "demo_summary.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(root / "verdict.md", verdict_markdown(summary))
    echo(verdict_markdown(summary))
    echo(f"report: {root / 'eval' / 'report.md'}")
    if not all(check["passed"] for check in verdict):
        echo(f"some demo targets were missed: see {root / 'verdict.md'} (the report states the numbers)")
    return summary


def _subprocess(args: list[str]) -> int:
    return subprocess.call([sys.executable, "-m", "selfpowered.cli", *args])


def demo_verdict(report: dict, vanilla: str = "vanilla", selfpowered: str = "selfpowered") -> list[dict]:
    """The issue's targets, each with the measured numbers and pass / fail (never tuned to pass)."""
    systems = report["systems"]
    v, s = systems[vanilla], systems[selfpowered]

    def get(row: dict, suite: str, key: str):
        return row.get(suite, {}).get(key)

    checks = []

    def target(name: str, measured: str, passed: bool | None) -> None:
        checks.append({"target": name, "measured": measured, "passed": passed})

    v_echo, s_echo = get(v, "instruct", "echo_rate"), get(s, "instruct", "echo_rate")
    v_chrf, s_chrf = get(v, "instruct", "consistency_chrf"), get(s, "instruct", "consistency_chrf")
    v_wer, s_wer = get(v, "asr", "wer"), get(s, "asr", "wer")
    v_text, s_text = get(v, "conflict", "follows_text"), get(s, "conflict", "follows_text")
    known = lambda *xs: all(x is not None for x in xs)  # noqa: E731
    target("vanilla echo rate on non-ASR instructions >= 0.8", f"{v_echo}", v_echo >= 0.8 if known(v_echo) else None)
    target("self-powered echo rate <= 0.3", f"{s_echo}", s_echo <= 0.3 if known(s_echo) else None)
    target(
        "self-powered consistency (chrF) clearly above vanilla (>= +5)",
        f"{s_chrf} vs {v_chrf}",
        s_chrf >= v_chrf + 5 if known(s_chrf, v_chrf) else None,
    )
    target(
        "self-powered ASR WER within 1.5x of vanilla",
        f"{s_wer} vs {v_wer} ({s_wer / v_wer:.2f}x)" if known(s_wer, v_wer) and v_wer else f"{s_wer} vs {v_wer}",
        s_wer <= 1.5 * v_wer if known(s_wer, v_wer) else None,
    )
    target(
        "conflict probe: self-powered follows the text instruction more often than vanilla",
        f"{s_text} vs {v_text}",
        s_text > v_text if known(s_text, v_text) else None,
    )
    # verifiable instructions (issue 16): the self-powered arm keeps more of its LLM's instruction following
    v_delta = ((v.get("ifeval") or {}).get("vs_text") or {}).get("strict", {}).get("delta_vs_text")
    s_delta = ((s.get("ifeval") or {}).get("vs_text") or {}).get("strict", {}).get("delta_vs_text")
    if known(v_delta, s_delta):
        gap = next(
            (
                g
                for g in (report.get("ifeval_gaps") or {}).get("strict", [])
                if {g["system"], g["over"]} == {vanilla, selfpowered}
            ),
            None,
        )
        interval = ""
        if gap and None not in gap["gap_95ci"]:  # paired over the same items; oriented self-powered minus vanilla
            low, high = gap["gap_95ci"] if gap["system"] == selfpowered else [-x for x in reversed(gap["gap_95ci"])]
            interval = f", 95% CI {100 * low:+.0f} to {100 * high:+.0f}"
        target(
            "ifeval: self-powered IFrate delta vs text mode >= 20 points above vanilla's",
            f"{s_delta} vs {v_delta} ({100 * (s_delta - v_delta):+.0f} points{interval})",
            s_delta >= v_delta + 0.20,
        )
    checks += _cascade_targets(systems, selfpowered)
    # out of domain (issue 13): present when the report has the sets
    if "asr@real" in s:
        real = get(s, "asr@real", "wer")
        target("real recordings: self-powered LSM WER <= 0.10", f"{real}", real <= 0.10 if known(real) else None)
    if "asr@ood" in s:
        ood, cascade = get(s, "asr@ood", "wer"), get(systems.get("cascade", {}), "asr@ood", "wer")
        bound = max(0.20, 2 * cascade) if known(cascade) else None
        target(
            "ood: self-powered LSM WER <= max(0.20, 2x the cascade's)",
            f"{ood} vs bound {bound} (cascade {cascade})",
            ood <= bound if known(ood, bound) else None,
        )
        v_self, s_self = get(v, "instruct@ood", "self_echo_rate"), get(s, "instruct@ood", "self_echo_rate")
        target("ood: vanilla self-echo >= 0.6", f"{v_self}", v_self >= 0.6 if known(v_self) else None)
        target("ood: self-powered self-echo <= 0.3", f"{s_self}", s_self <= 0.3 if known(s_self) else None)
    return checks


# what a transcript cannot carry (issue 33): accuracy each attribute needs on held-out voices
PARALING_TARGETS = {"pace": 0.90, "background": 0.90, "room": 0.85, "gender": 0.90, "speakers": 0.85}
LEAK_BOUND = 0.60  # a cascade or text baseline above this on an attribute: the words give it away


def _cascade_targets(systems: dict, selfpowered: str) -> list[dict]:
    """Issue 33's targets, where the report has the suites: on untrained task types the
    self-powered LSM is no worse than the cascade it contains, and it hears what the cascade cannot."""
    checks: list[dict] = []

    def add(name: str, measured: str, passed: bool | None) -> None:
        checks.append({"target": name, "measured": measured, "passed": passed})

    s, cascade, text = systems[selfpowered], systems.get("cascade", {}), systems.get("text", {})
    content, c_content, t_content = s.get("content"), cascade.get("content"), text.get("content")
    if content and c_content:
        for key, label in (("consistency_chrf", "consistency chrF"), ("task_check", "task check")):
            mine, theirs = content.get(key), c_content.get(key)
            passed = None if None in (mine, theirs) else mine >= theirs
            add(f"untrained tasks: self-powered {label} >= the cascade's", f"{mine} vs {theirs}", passed)
        if t_content:
            mine, bound = content.get("echo_rate"), round((t_content.get("echo_rate") or 0) + 0.05, 4)
            passed = mine is not None and mine <= bound
            add("untrained tasks: self-powered echo rate <= the text LLM's + 0.05", f"{mine} vs bound {bound}", passed)
        loops = content.get("loop_rate")
        add("untrained tasks: no looping answer", f"loop rate {loops}", None if loops is None else loops == 0)
    wording = (s.get("asr") or {}).get("wer_per_template")
    c_wording = (cascade.get("asr") or {}).get("wer_per_template")
    if wording and c_wording:
        ratios = {w: wording[w] / max(c_wording.get(w) or 1e-9, 1e-9) for w in wording}
        worst = max(ratios, key=ratios.get)
        measured = f"worst {ratios[worst]:.2f}x ({worst!r}: {wording[worst]} vs {c_wording.get(worst)})"
        add("ASR: self-powered WER <= 1.1x the cascade's on every wording", measured, ratios[worst] <= 1.1)
    # the likeliest option where it was asked: a parsed answer also needs the LLM to obey the format
    way = CLOSED if s.get(CLOSED) else "paraling"
    how = ", likeliest option" if way == CLOSED else ""
    for data, attributes in ((s.get(way) or {}).get("per_set") or {}).items():
        for attribute, needed in PARALING_TARGETS.items():
            if attribute not in attributes:
                continue
            mine = attributes[attribute]["accuracy"]
            leaks = [_paraling_accuracy(systems.get(b, {}), way, data, attribute) for b in ("cascade", "text")]
            name = f"paraling{how}, {data}: self-powered {attribute} >= {needed}, cascade and text <= {LEAK_BOUND}"
            add(name, f"{mine} (cascade {leaks[0]}, text {leaks[1]})", mine >= needed and max(leaks) <= LEAK_BOUND)
    return checks


def _paraling_accuracy(row: dict, way: str, data: str, attribute: str) -> float:
    found = ((row.get(way) or {}).get("per_set") or {}).get(data, {}).get(attribute, {})
    return round(found.get("accuracy") or 0.0, 3)


def verdict_markdown(summary: dict) -> str:
    lines = ["## Demo verdict", "", "| target | measured (self-powered vs vanilla) | result |", "|---|---|---|"]
    for check in summary["verdict"]:
        result = {True: "PASS", False: "**MISSED**", None: "not measured"}[check["passed"]]
        lines.append(f"| {check['target']} | {check['measured']} | {result} |")
    lines += ["", "| stage | seconds | reused |", "|---|---|---|"]
    for name, info in summary["stages"].items():
        lines.append(f"| {name} | {info['seconds']} | {'yes' if info['reused'] else 'no'} |")
    lines.append(f"\nMode: {summary['mode']}; wall time of this run {summary['wall_seconds_this_run']} s.")
    return "\n".join(lines) + "\n"
