"""The `transformers` backend on a tiny LLaVA built from small configs, with a BPE tokenizer trained in
the test, saved to a folder and loaded through the path a user's model folder takes. Its random output
is parsed, recorded as missing facets, scored under the threshold, and cached."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medtrinity_core.describe.faithfulness import score
from medtrinity_core.describe.prompts import BUNDLED
from medtrinity_core.sources.schema import GeneratorSpec

from .test_openai_backend import CYST

TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}"
            "{% endif %}{% endfor %}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")


def build_tiny_llava(folder) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    corpus = [(BUNDLED / "describe-v1.txt").read_text()] * 3 + ["a small round renal cyst lies on the left, covering 1% of the image."] * 20
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>", "<unk>", "<image>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        extra_special_tokens={"image_token": "<image>"})
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), tokenizer=tokenizer,
                               patch_size=16, vision_feature_select_strategy="default", chat_template=TEMPLATE, num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1, vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-llava"
    build_tiny_llava(folder)
    return folder


def png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 56, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_local_model_folder_generates_batched_greedy_and_deterministic(tiny_llava):
    from dataclasses import replace

    from medtrinity_core.describe.transformers_backend import TransformersGenerator

    gen = TransformersGenerator(GeneratorSpec(backend="transformers", model=str(tiny_llava), max_new_tokens=24, batch_size=2))
    assert gen.model_id.startswith("tiny-llava@") and str(gen.placement()[0]) == "cpu" and str(gen.placement()[1]) == "torch.float32"
    batch = [(CYST, png(90)), (replace(CYST, image_id="img-2", body_region=None), png(200))]  # prompts of different lengths: left padding
    first = gen.generate(batch)
    assert all(o["error"] is None and o["text"] for o in first)
    assert first[0]["usage"]["completion_tokens"] > 0 and first[0]["usage"]["prompt_tokens"] > first[1]["usage"]["prompt_tokens"] - 20
    assert gen.generate(batch) == first  # greedy on the CPU: the same text twice
    alone = gen.generate([batch[1]])[0]
    assert alone["text"] == first[1]["text"]  # left padding does not change a padded row's answer
    # random weights answer garbage: no facet parsed, each recorded missing, scored under the gate
    assert first[0]["missing_facets"] == ["modality", "organ_tissue", "roi_location", "colour_texture", "relationships", "knowledge"]
    garbage = score(CYST, first[0]["text"], first[0]["facets"])
    assert garbage.completeness < 0.6 and "name of renal cyst" in garbage.missing  # it states none of the facts: excluded as incomplete


def test_a_sources_file_names_the_folder_and_the_asset_runs_in_the_gpu_pool(tiny_llava, tiny_sources, tmp_path):
    from medtrinity_core.config import load_sources
    from medtrinity_core.describe.stage import make_generator
    from medtrinity_core.errors import SourcesFileError
    from medtrinity_dagster.build import build_definitions

    path = tiny_sources.parent / "tiny-llava-sources.yaml"
    path.write_text(tiny_sources.read_text() + f"    generator: {{backend: transformers, model: '{tiny_llava}', max_new_tokens: 8}}\n")
    src = load_sources(path).sources[0]
    assert src.generator.backend == "transformers" and make_generator(src.generator).name == "transformers"
    defs = build_definitions(load_sources(path), str(tmp_path / "wd"))
    pools = {a.key.path[-1]: a.op.pool for a in defs.assets if a.key.path[0] == src.name}
    assert pools["descriptions"] == "gpu" and pools["context"] is None
    path.write_text(tiny_sources.read_text() + "    generator: {backend: transformers, model: no-such-folder}\n")
    with pytest.raises(SourcesFileError, match=r"generator\.model: folder .*no-such-folder does not exist"):
        load_sources(path)
