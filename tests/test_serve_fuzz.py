"""Fuzzing the API (issue 35): requests drawn from its own OpenAPI schema by schemathesis, valid and
invalid, and raw bodies of any shape from hypothesis - none may get a 5xx, and the server must be
healthy after each. A short run here (`SELFPOWERED_FUZZ_EXAMPLES`, default 40 per operation); the
long one is bench/serve_fuzz.sh. The app runs in-process (ASGI) around a tiny random LSM, so a
valid request really decodes."""

from __future__ import annotations

import json
import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

EXAMPLES = int(os.environ.get("SELFPOWERED_FUZZ_EXAMPLES", "40"))
COUNTS = {"requests": 0, "server_errors": 0}


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    """With SELFPOWERED_FUZZ_REPORT=FILE (bench/serve_fuzz.sh), how many requests were sent."""
    yield
    if os.environ.get("SELFPOWERED_FUZZ_REPORT"):
        with open(os.environ["SELFPOWERED_FUZZ_REPORT"], "w") as handle:
            json.dump({**COUNTS, "examples_per_test": EXAMPLES}, handle)


def _app():
    import torch

    from selfpowered.config import ServeConfig
    from selfpowered.model.served import ServedModel
    from selfpowered.serve.api import create_app
    from selfpowered.serve.engine import Engine
    from tests.tiny import tiny_lsm

    torch.manual_seed(0)
    served = ServedModel.from_lsm("tiny", tiny_lsm(), merge_lora=False)
    served.max_prompt_tokens = 512
    engine = Engine({"tiny": served}, max_batch=8, max_queue=64).start()
    return create_app(engine, ServeConfig(max_audio_seconds=5, max_tokens=16, max_body_mb=1.0, max_prompt_tokens=512))


APP = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES)
CLIENT = TestClient(APP, raise_server_exceptions=False)


def _healthy() -> bool:
    return CLIENT.get("/health").status_code == 200


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=EXAMPLES)
def test_no_request_from_the_schema_gets_a_server_error(case):
    response = case.call()
    COUNTS["requests"] += 1
    COUNTS["server_errors"] += response.status_code >= 500
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
    kind = response.headers.get("content-type") or [""]
    if response.status_code >= 400 and str(kind[0] if isinstance(kind, list) else kind).startswith("application/json"):
        error = response.json().get("error")
        assert isinstance(error, dict) and isinstance(error.get("message"), str), response.text[:300]
        assert " at 0x" not in error["message"] and "Traceback" not in error["message"]
    assert _healthy()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
FIELDS = ["model", "messages", "max_tokens", "stream", "stream_options", "stop", "seed", "temperature", "top_p", "n"]


@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=EXAMPLES * 3)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        JSON.map(lambda value: json.dumps(value).encode()),
        st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6).map(
            lambda d: json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **d}).encode()
        ),
        st.integers(60, 5000).map(lambda depth: ("[" * depth + "]" * depth).encode()),
    ),
    kind=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
    path=st.sampled_from(["/v1/chat/completions", "/v1/audio/transcriptions", "/ui/compare", "/v1/nowhere"]),
)
def test_no_raw_body_of_any_shape_gets_a_server_error(body, kind, path):
    response = CLIENT.post(path, content=body, headers={"content-type": kind} if kind else {})
    COUNTS["requests"] += 1
    COUNTS["server_errors"] += response.status_code >= 500
    assert response.status_code < 500, f"{path} {kind} {body[:80]!r}: {response.status_code} {response.text[:300]}"
    assert _healthy()
