"""Self-powered samples with verifiable constraints (`verify:` in a task library, preset
demo-ifeval): the LLM's answer is kept only when IFEval's own checker passes it, and the training
wordings never repeat the `ifeval` evaluation suite's."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfpowered.augment.filters import reject_reason
from selfpowered.config import FilterConfig
from selfpowered.errors import ConfigError
from selfpowered.text import ifeval
from selfpowered.text.tasks import TaskLibrary

TRANSCRIPT = "My sister baked a loaf of bread at the market yesterday."


def _task(name: str):
    return TaskLibrary.load("demo-ifeval").task(name)


@pytest.mark.parametrize(
    "task, answer, reason",
    [
        ("lowercase", "a sister bakes bread at a market", None),
        (
            "lowercase",
            "A sister bakes bread at a market",
            "fails its verifiable constraint: change_case:english_lowercase",
        ),
        ("no_comma", "She will sell the bread before noon.", None),
        ("no_comma", "Then, she will sell the bread.", "fails its verifiable constraint: punctuation:no_comma"),
        ("bullets", "* a sister\n* fresh bread", None),
        (
            "bullets",
            "* a sister\n* fresh bread\n* a market",
            "fails its verifiable constraint: detectable_format:number_bullet_lists",
        ),
        ("json", '{"summary": "baking bread"}', None),
        ("angle_title", "<<Market Bread>>", None),
        ("angle_title", "Market Bread", "fails its verifiable constraint: detectable_format:title"),
        ("end_phrase", "She baked bread. That is my answer.", None),
    ],
)
def test_an_answer_is_kept_only_if_the_ifeval_checker_passes_it(task, answer, reason):
    t = _task(task)
    got = reject_reason(
        answer, TRANSCRIPT, "stop", t.copy_allowed, FilterConfig(), t.final_punctuation, t.templates[0], t.constraints
    )
    assert got == reason


def test_training_wordings_are_never_the_evaluation_suites():
    library = TaskLibrary.load("demo-ifeval")
    templates = [template.lower() for task in library.tasks for template in task.templates]
    probes = [w.split("{")[0].strip().lower() for wordings in ifeval.WORDINGS.values() for w in wordings]
    probes += [task.lower() for task in ifeval.TASKS]
    clashes = [(p, t) for p in probes if len(p) > 12 for t in templates if p in t]
    assert not clashes
    constrained = {c for task in library.tasks for c, _ in task.constraints}
    assert constrained <= set(ifeval.WORDINGS)  # every trained constraint is one the suite scores


def test_an_unknown_constraint_id_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  x: {verify: {no:such_id: {}}, templates: [Say it]}\n")
    task = TaskLibrary.load(str(bad)).task("x")
    with pytest.raises(ValueError, match="unknown IFEval instruction id"):
        reject_reason("fine.", TRANSCRIPT, "stop", False, FilterConfig(), True, "Say it", task.constraints)
    bad.write_text("tasks:\n  x: {verify: [punctuation:no_comma], templates: [Say it]}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: tasks\.x\.verify: Input should be a valid dictionary"):
        TaskLibrary.load(str(bad))


def test_a_preset_file_is_validated_by_its_model_and_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    for body, error in [
        ("tasks:\n  x: {wieght: 2, templates: [Say it]}\n", r"tasks\.x\.wieght: Extra inputs are not permitted"),
        ("tasks:\n  x: {weight: -1, templates: [Say it]}\n", r"tasks\.x\.weight: Input should be greater than"),
        ("tasks:\n  x: {answer: teacher, templates: [Say it]}\n", r"tasks\.x\.answer: String should match"),
        ("tasks:\n  x: {templates: []}\n", r"task 'x' needs a non-empty list of templates"),
        ("tasks:\n  x: {attribute: mood, templates: [Say it]}\n", r"attribute must be one of gender"),
        ("tasks: {}\n", r"bad.yaml: tasks: Dictionary should have at least 1 item"),
        ("- a list\n", r"expected a mapping"),
        ("extends: nope\ntasks:\n  a: {templates: [x]}\n", r"bad.yaml: extends 'nope', not a shipped preset"),
        ("extends: demo\ntasks:\n  title: {templates: [x]}\n", r"task\(s\) \['title'\] already in 'demo'"),
        ("extends: wide\ntasks:\n  a: {templates: [x]}\n", r"extends 'wide', which itself extends another"),
    ]:
        bad.write_text(body)
        with pytest.raises(ConfigError, match=error):
            TaskLibrary.load(str(bad))


def test_every_shipped_preset_validates_and_the_listing_names_each_with_the_task_settings():
    from selfpowered.text.tasks import TaskSpec, describe_presets, presets

    listing = describe_presets()
    docs = (Path(__file__).resolve().parents[1] / "docs/training.md").read_text()
    for preset in presets():
        assert f"#   {preset}: " in listing and TaskLibrary.load(preset).tasks
        assert f"| `{preset}` |" in docs, f"docs/training.md's preset table lacks {preset}"
    for setting in TaskSpec.model_fields:
        assert f"#   {setting} (default " in listing
    assert "demo: continuation (x2, 5 wordings)" in listing


def test_the_sound_questions_eval_asks_are_worded_as_no_training_library_words_them():
    """The `paraling` suite's wordings (paraling-heldout) are never trained on: neither the open
    questions (paraling) nor the closed ones (paraling-closed) share a template with it."""
    asked = {t for task in TaskLibrary.load("paraling-heldout").tasks for t in task.templates}
    for preset in ("paraling", "paraling-closed"):
        trained = {t.lower().strip() for task in TaskLibrary.load(preset).tasks for t in task.templates}
        assert trained and not {t.lower().strip() for t in asked} & trained, preset
    closed = TaskLibrary.load("paraling-closed")
    assert all(task.options and task.attribute for task in closed.tasks)  # each closed, each about one attribute


def test_a_preset_that_extends_another_adds_its_tasks_after_the_base(tmp_path):
    demo, wide = TaskLibrary.load("demo"), TaskLibrary.load("wide")
    assert wide.tasks[: len(demo.tasks)] == demo.tasks  # the base's tasks first, unchanged
    assert {"explain", "reply", "poem"} <= {task.name for task in wide.tasks[len(demo.tasks) :]}
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: demo\ntasks:\n  haiku: {templates: [Write a haiku about this]}\n")
    assert [task.name for task in TaskLibrary.load(str(mine)).tasks][-1] == "haiku"
    assert TaskLibrary.load(str(mine), weights={"title": 0}).task("haiku")  # the base's tasks take overrides
    # (a bad `extends:` - unknown, redefining a task, two levels - is among the bad preset files above)


def test_the_wide_library_trains_no_task_type_or_wording_of_the_content_suite():
    """The `content` suite measures task types the LSM never trained: the `wide` training library
    adds kinds of request, none of them translation, keywords, summaries or yes/no questions."""
    content, wide = TaskLibrary.load("content"), TaskLibrary.load("wide")
    untrained = {"translation", "keywords", "summary", "yesno"}
    assert untrained <= {task.name for task in content.tasks}
    assert not untrained & {task.name for task in wide.tasks}
    trained = {t.lower() for task in wide.tasks for t in task.templates}
    for held_out in (content, TaskLibrary.load("demo-heldout")):  # the content and instruct suites' wordings
        assert not trained & {t.lower() for task in held_out.tasks for t in task.templates}
    for word in ("french", "translat", "keyword", "key term", "summar", "gist", "sum this", "yes or no"):
        assert not any(word in template for template in trained), word
