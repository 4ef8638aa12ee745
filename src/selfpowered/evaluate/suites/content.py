"""The `content` suite: task types the demo library never trains (translation, keyword lists,
summaries, yes/no questions about what was said, ...) on a test set of speech and voices never
trained on; every LSM against the cascade it contains, scored as `instruct` (with intervals)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from selfpowered.config.base import StrictModel
from selfpowered.corpus.quality import sample_rows
from selfpowered.errors import SelfPoweredError
from selfpowered.evaluate.suites import Building, Suite, SuiteSpec, register_suite
from selfpowered.evaluate.suites.instruct import instruct_suite
from selfpowered.text.tasks import TaskLibrary


class ContentOptions(StrictModel):
    data: str = Field(..., description="a test manifest of speech and voices never trained on (e.g. the ood set)")
    tasks: str = Field("content", description="task library of untrained task types")
    limit: int = Field(240, ge=1, description="utterances drawn (seeded) from `data`")


@register_suite
class Content(SuiteSpec):
    name = "content"
    summary = "untrained task types (translation, keywords, summary, yes/no...) on unseen speech, scored as instruct"
    default = False
    Options = ContentOptions

    def build(self, building: Building, options: ContentOptions) -> dict[str, Suite]:
        data = Path(options.data)
        if not data.is_file():
            raise SelfPoweredError(f"{data}: content.data manifest not found")
        rows = sample_rows(data, options.limit, building.settings.seed)
        library = TaskLibrary.load(options.tasks, building.settings.seed)
        made = instruct_suite(rows, data.parent, library, None)
        # its set's asr suite (the same rows, when the set is one of the evaluation's) gives the self-echo
        return {"content": Suite("content", made.queries, made.meta, "instruct", building.set_name(options.data))}
