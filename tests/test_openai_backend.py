"""The `openai` backend against a real HTTP server on 127.0.0.1 speaking the chat-completions protocol,
scripted to answer, answer late, return 429 with Retry-After, 500, or send empty or malformed bodies."""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from medtrinity_core.describe.facts import Facts, LabelFacts, Passage
from medtrinity_core.describe.openai_backend import OpenAIGenerator
from medtrinity_core.sources.schema import GeneratorSpec

FAITHFUL = {
    "modality": "Axial computed tomography.", "organ_tissue": "The abdomen is shown.",
    "roi_location": "A small, round renal cyst lies on the left.", "colour_texture": "The cyst is hypodense and homogeneous.",
    "relationships": "Only one region.", "knowledge": "Renal cysts are usually benign [kb:cysts#0].",
}


class ScriptedServer:
    """Answers each request with the next scripted step (then `ok`): ok, late:S, 429:S, 500, 400, empty, malformed, garbage."""

    def __init__(self):
        self.script: list[str] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.answer = json.dumps(FAITHFUL)
        self.delay = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return None

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.requests.append({"body": body, "auth": self.headers.get("Authorization"), "at": time.monotonic()})
                    step = owner.script.pop(0) if owner.script else "ok"
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                try:
                    self.respond(step)
                finally:
                    with owner.lock:
                        owner.in_flight -= 1

            def send(self, status, payload: bytes, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def respond(self, step):
                kind, _, arg = step.partition(":")
                if kind == "late":
                    time.sleep(float(arg))
                if kind == "429":
                    return self.send(429, b'{"error": "slow down"}', [("Retry-After", arg or "1")])
                if kind in ("500", "400"):
                    return self.send(int(kind), b'{"error": "boom"}')
                if kind == "empty":
                    return self.send(200, b"")
                if kind == "malformed":
                    return self.send(200, b'{"choices": [')
                time.sleep(owner.delay)
                content = "I cannot tell what this image shows." if kind == "garbage" else owner.answer
                self.send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}],
                                           "usage": {"prompt_tokens": 100, "completion_tokens": 40}}).encode(), [("Content-Type", "application/json")])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture()
def server():
    s = ScriptedServer()
    yield s
    s.server.shutdown()


CYST = Facts("img-1", "ct", "abdomen", "axial", 12, True, labels=(LabelFacts(
    "renal cyst", "kidney cyst", "finding", 1, "left", "small", 0.8, None, None, "posterior, patient's left", None, "round", "well-circumscribed",
    "hypodense", "homogeneous", None, "ground_truth_mask", None, None),), passages=(Passage("kb:cysts#0", "kidney cyst", "Kidney Cysts", "Cysts are sacs."),))


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def generator(server, **kw) -> OpenAIGenerator:
    return OpenAIGenerator(GeneratorSpec(backend="openai", url=server.url, model="tiny-vlm", backoff_s=0.05, timeout_s=2.0, retries=3, **kw))


def test_an_answer_is_parsed_into_facets_and_the_request_carries_the_prompt_and_image(server):
    out = generator(server).generate([(CYST, png())])[0]
    assert out["error"] is None and out["missing_facets"] == [] and out["facets"]["roi_location"] == FAITHFUL["roi_location"]
    assert out["cited_passages"] == ["kb:cysts#0"] and out["usage"] == {"prompt_tokens": 100, "completion_tokens": 40}
    sent = server.requests[0]["body"]
    text, image = sent["messages"][0]["content"]
    assert sent["model"] == "tiny-vlm" and sent["temperature"] == 0.0
    assert "renal cyst" in text["text"] and "posterior, patient's left" in text["text"] and "[kb:cysts#0]" in text["text"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")


def test_429_honours_retry_after_and_500_timeouts_and_bad_bodies_are_retried(server):
    server.script = ["429:1"]
    start = time.monotonic()
    assert generator(server).generate([(CYST, png())])[0]["error"] is None
    assert time.monotonic() - start >= 0.95 and len(server.requests) == 2  # waited as the server asked
    for steps in (["500", "500"], ["late:3"], ["empty", "malformed"]):
        server.requests.clear()
        server.script = list(steps)
        out = generator(server).generate([(CYST, png())])[0]
        assert out["error"] is None and len(server.requests) == len(steps) + 1, steps


def test_an_item_that_keeps_failing_comes_back_as_an_error_and_the_batch_goes_on(server):
    server.script = ["500"] * 4
    out = generator(server, concurrency=1).generate([(CYST, png()), (replace(CYST, image_id="img-2"), png())])
    assert out[0]["error"] == "HTTP 500 after 4 attempts" and out[1]["error"] is None
    server.script = ["400"]
    assert generator(server).generate([(CYST, png())])[0]["error"].startswith("HTTP 400 from")  # a client error is not retried
    assert len(server.requests) == 6


def test_requests_run_concurrently_up_to_the_limit(server):
    server.delay = 0.3
    batch = [(replace(CYST, image_id=f"img-{n}"), png()) for n in range(8)]
    start = time.monotonic()
    out = generator(server, concurrency=4).generate(batch)
    assert all(o["error"] is None for o in out) and server.max_in_flight == 4
    assert time.monotonic() - start < 8 * 0.3 * 0.6


def test_the_key_comes_from_the_named_variable(server, monkeypatch):
    gen = generator(server, api_key_env="MEDTRINITY_TEST_VLM_KEY")
    assert gen.generate([(CYST, png())])[0]["error"] == "generator.api_key_env names MEDTRINITY_TEST_VLM_KEY, which is not set in the environment"
    monkeypatch.setenv("MEDTRINITY_TEST_VLM_KEY", "k-123")
    assert gen.generate([(CYST, png())])[0]["error"] is None and server.requests[-1]["auth"] == "Bearer k-123"


def test_headed_answers_parse_and_missing_facets_are_recorded(server):
    server.answer = "Modality: axial CT.\nOrgan and tissue: abdomen.\n**ROI location**: a small renal cyst on the left.\n"
    out = generator(server).generate([(CYST, png())])[0]
    assert out["facets"] == {"modality": "axial CT.", "organ_tissue": "abdomen.", "roi_location": "a small renal cyst on the left."}
    assert out["missing_facets"] == ["colour_texture", "relationships", "knowledge"]


def test_a_garbage_answer_is_kept_scored_low_and_stopped_by_the_gate(server, tiny_sources, tmp_path):
    """Through Dagster: a source whose model answers nothing useful gets descriptions that state none of their facts (completeness 0), its
    blocking faithfulness check fails, and the partition has no triplets."""
    from medtrinity_core.storage import read_parquet

    from .conftest import materialize_source

    text = tiny_sources.read_text() + f"    generator: {{backend: openai, url: '{server.url}', model: tiny-vlm, backoff_s: 0.05}}\n"
    path = tiny_sources.parent / "garbage-sources.yaml"
    path.write_text(text)
    server.script = ["garbage"] * 20
    run = materialize_source(path, tmp_path / "wd")
    wd, src, shard, result = run["workdir"], run["source"], run["shard"], run["result"]
    descriptions = read_parquet(wd.manifest_path(src.name, "descriptions", shard))
    assert descriptions.height >= 1 and descriptions["completeness"].max() < 0.6  # claims nothing false, states none of its facts
    assert set(descriptions["missing_facets"].to_list()[0]) == {"modality", "organ_tissue", "roi_location", "colour_texture", "relationships", "knowledge"}
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "faithfulness")
    assert not check.passed and check.metadata["mean_completeness"].value < 0.6
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "descriptions" in materialized and "triplets" not in materialized  # blocked
    assert not wd.manifest_path(src.name, "triplets", shard).exists()
