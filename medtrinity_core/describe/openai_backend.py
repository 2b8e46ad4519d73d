"""The `openai` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang, TGI, Ollama).

Each image goes as a PNG data URL (its ROI boxes drawn on a copy) beside the rendered prompt. Requests
run `concurrency` at a time; 429, 5xx, timeouts, dropped connections and empty or malformed answers are
retried `retries` times with exponential back-off and jitter (a `Retry-After` header is honoured); other
4xx answers are not retried. An image that still fails comes back with an `error` (the stage quarantines
it as `generator_error`) and the rest of the batch goes on. The key is read from the environment
variable `api_key_env`, never from the sources file. Token usage is returned per image."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

from medtrinity_core.describe.facts import Facts
from medtrinity_core.describe.prompts import FACETS, load_prompt, parse_answer
from medtrinity_core.sources.schema import GeneratorSpec

MAX_WAIT_S = 30.0


def retry_after(headers) -> float | None:
    value = headers.get("retry-after")
    try:
        return min(float(value), MAX_WAIT_S) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to the back-off


def answer_result(content: str, facts: Facts, usage: dict | None) -> dict:
    """The model's answer as facets (JSON or headed paragraphs), the passages it cites by id."""
    facets, missing = parse_answer(content)
    text = " ".join(facets[k] for k in FACETS if k in facets) if facets else re.sub(r"\s+", " ", content).strip()
    known = {p.passage_id for p in facts.passages}
    cited = [pid for pid in dict.fromkeys(re.findall(r"\[([^\]\s]+)\]", content)) if pid in known]
    return {"text": text, "facets": facets, "cited_passages": cited, "missing_facets": missing, "usage": usage, "error": None}


class OpenAIGenerator:
    name = "openai"
    needs_image = True

    def __init__(self, spec: GeneratorSpec):
        self.spec = spec
        self.model_id = spec.model
        self.prompt = load_prompt(spec.prompt)
        self.prompt_version = self.prompt.version
        self.params = json.dumps({"max_new_tokens": spec.max_new_tokens, "temperature": spec.temperature}, sort_keys=True)
        self.batch_size = spec.concurrency * 4
        self.endpoint = spec.url.rstrip("/") + "/chat/completions"

    def _headers(self) -> dict:
        if not self.spec.api_key_env:
            return {}
        key = os.environ.get(self.spec.api_key_env)
        if not key:
            raise KeyError(f"generator.api_key_env names {self.spec.api_key_env}, which is not set in the environment")
        return {"Authorization": f"Bearer {key}"}

    def _body(self, facts: Facts, png: bytes) -> dict:
        image = "data:image/png;base64," + base64.b64encode(png).decode()
        return {
            "model": self.spec.model, "max_tokens": self.spec.max_new_tokens, "temperature": self.spec.temperature,
            "messages": [{"role": "user", "content": [{"type": "text", "text": self.prompt.render(facts)}, {"type": "image_url", "image_url": {"url": image}}]}],
        }

    def _one(self, client, headers: dict, facts: Facts, png: bytes) -> dict:
        import httpx

        body, last = self._body(facts, png), "no attempt"
        for attempt in range(self.spec.retries + 1):
            wait = None
            try:
                response = client.post(self.endpoint, json=body, headers=headers)
            except httpx.TimeoutException:
                last = f"no answer within {self.spec.timeout_s:g} s"
            except httpx.TransportError as exc:
                last = f"connection failed ({exc.__class__.__name__}: {exc})"
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    last, wait = f"HTTP {response.status_code}", retry_after(response.headers)
                elif response.status_code >= 400:
                    return {"error": f"HTTP {response.status_code} from {self.endpoint}: {response.text[:200]}"}
                else:
                    try:
                        data = response.json()
                        content = data["choices"][0]["message"]["content"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        content, data = None, None
                    if isinstance(content, str) and content.strip():
                        return answer_result(content, facts, data.get("usage"))
                    last = f"malformed or empty answer ({response.text[:120]!r})"
            if attempt < self.spec.retries:
                backoff = self.spec.backoff_s * 2 ** attempt
                time.sleep(wait if wait is not None else min(backoff + random.uniform(0, backoff), MAX_WAIT_S))
        return {"error": f"{last} after {self.spec.retries + 1} attempts"}

    def generate(self, batch: list[tuple[Facts, bytes | None]]) -> list[dict]:
        import httpx

        try:
            headers = self._headers()
        except KeyError as exc:
            return [{"error": exc.args[0]} for _ in batch]
        with httpx.Client(timeout=self.spec.timeout_s) as client, ThreadPoolExecutor(max_workers=self.spec.concurrency) as pool:
            return list(pool.map(lambda item: self._one(client, headers, item[0], item[1]), batch))
