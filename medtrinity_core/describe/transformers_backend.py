"""The `transformers` backend: any local image-text-to-text model folder (`AutoProcessor` +
`AutoModelForImageTextToText`: LLaVA-style captioners, Qwen2-VL/2.5-VL, SmolVLM, ...), never downloaded.

The processor's chat template formats each request (the image, then the rendered prompt); a batch is
padded on the left and decoded greedily unless `temperature` > 0. Device and dtype are chosen
automatically (CUDA in bf16 when present, else the CPU in fp32) or set in the sources file. The model
loads once per process; the descriptions asset of such a source runs in the `gpu` pool."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

from medtrinity_core.describe.facts import Facts
from medtrinity_core.describe.openai_backend import answer_result
from medtrinity_core.describe.prompts import load_prompt
from medtrinity_core.sources.schema import GeneratorSpec


def model_id_of(folder: str) -> str:
    """The folder's name and a hash of its config and weight files' names and sizes."""
    path = Path(folder)
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.suffix in (".json", ".safetensors", ".bin") or f.name.endswith(".jinja")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
            if f.name == "config.json":
                h.update(f.read_bytes())
    return f"{path.name}@{h.hexdigest()[:12]}"


class TransformersGenerator:
    name = "transformers"
    needs_image = True

    def __init__(self, spec: GeneratorSpec):
        self.spec = spec
        self.folder = spec.model
        self.model_id = model_id_of(spec.model)
        self.prompt = load_prompt(spec.prompt)
        self.prompt_version = self.prompt.version
        self.params = json.dumps({"max_new_tokens": spec.max_new_tokens, "temperature": spec.temperature, "dtype": spec.dtype}, sort_keys=True)
        self.batch_size = spec.batch_size
        self._loaded = None

    def placement(self):
        import torch

        device = self.spec.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self.spec.dtype
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        return torch.device(device), getattr(torch, dtype)

    def load(self):
        if self._loaded is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoModelForImageTextToText, AutoProcessor
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            device, dtype = self.placement()
            processor = AutoProcessor.from_pretrained(self.folder, local_files_only=True)
            processor.tokenizer.padding_side = "left"
            model = AutoModelForImageTextToText.from_pretrained(self.folder, local_files_only=True, dtype=dtype).to(device).eval()
            self._loaded = (processor, model, device)
        return self._loaded

    def _run(self, batch: list[tuple[Facts, bytes]]) -> list[dict]:
        import torch
        from PIL import Image

        processor, model, device = self.load()
        texts = [processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt.render(f)}]}],
                                               add_generation_prompt=True, tokenize=False) for f, _ in batch]
        images = [Image.open(io.BytesIO(png)).convert("RGB") for _, png in batch]
        inputs = processor(text=texts, images=images, return_tensors="pt", padding=True).to(device)
        sampling = {"do_sample": True, "temperature": self.spec.temperature} if self.spec.temperature > 0 else {"do_sample": False}
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=self.spec.max_new_tokens, pad_token_id=processor.tokenizer.pad_token_id, **sampling)
        prompt_len = inputs["input_ids"].shape[1]
        pad = processor.tokenizer.pad_token_id
        results = []
        for (facts, _), row, ids in zip(batch, out, inputs["input_ids"]):
            new = row[prompt_len:]
            content = processor.tokenizer.decode(new, skip_special_tokens=True)
            usage = {"prompt_tokens": int((ids != pad).sum()), "completion_tokens": int((new != pad).sum())}
            results.append(answer_result(content, facts, usage))
        return results

    def generate(self, batch: list[tuple[Facts, bytes | None]]) -> list[dict]:
        try:
            return self._run(batch)
        except Exception as exc:  # noqa: BLE001 - a model failing on a batch: each image retried alone, so one bad image fails alone
            if len(batch) == 1:
                return [{"error": f"{self.model_id}: {exc.__class__.__name__}: {exc}"[:500]}]
            return [r for item in batch for r in self.generate([item])]
