"""The sources file as typed models: defaults stated once, the resolved document loading back to an equal
file, deprecated places and settings no stage reads yet warned about, and no stage imported by the
structural schema."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from medtrinity_core import config
from medtrinity_core.config import load_sources, resolved_document
from medtrinity_core.errors import SourcesFileError
from medtrinity_core.pipeline import REGISTRY
from medtrinity_core.sources import schema
from medtrinity_core.sources.schema import FaithfulnessConfig, SourceConfig

from .conftest import EXAMPLES

SOURCE = """\
version: 1
sources:
  - name: demo
    modality: ct
    license: CC-BY-4.0
    root: data
    layout: image_masks
    images: 'images/(?P<id>[^/]+)\\.png'
    masks:
      - pattern: 'masks/{id}\\.png'
        label: liver
"""


def write(tmp_path, text: str, name: str = "sources.yaml") -> Path:
    (tmp_path / "data" / "images").mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(text)
    return path


def quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all
        return load_sources(path)


def round_trip(sources_file, tmp_path, name="resolved.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(resolved_document(sources_file), sort_keys=False))
    return path, load_sources(path)


def test_a_default_is_stated_once_in_its_field_and_a_source_without_the_key_gets_it(tmp_path):
    assert SourceConfig.model_fields["shard_size"].default == 1000
    assert FaithfulnessConfig.model_fields["min_faithfulness"].default == 1.0 and FaithfulnessConfig.model_fields["min_completeness"].default == 0.6
    src = quietly(write(tmp_path, SOURCE)).sources[0]
    assert (src.shard_size, src.min_faithfulness, src.min_completeness, src.min_mean_completeness) == (1000, 1.0, 0.6, 0.8) and src.faithfulness == FaithfulnessConfig()
    assert "DEFAULTS" not in vars(schema)


def test_the_defaults_section_sets_numbers_and_faithfulness_for_every_source_that_does_not(tmp_path):
    text = SOURCE.replace("version: 1\n", "version: 1\ndefaults:\n  shard_size: 10\n  faithfulness: {min_faithfulness: 0.5}\n")
    text += text.split("sources:\n")[1].replace("name: demo", "name: other").replace("    root: data\n", "    root: data\n    shard_size: 20\n"
                                                                                          "    faithfulness: {max_contradiction_rate: 0.1}\n")
    sources = quietly(write(tmp_path, text))
    demo, other = sources.sources
    assert (demo.shard_size, demo.min_faithfulness, demo.max_contradiction_rate) == (10, 0.5, 0.05)
    assert (other.shard_size, other.min_faithfulness, other.max_contradiction_rate) == (20, 0.5, 0.1)
    assert sources.defaults["shard_size"] == 10 and sources.defaults["max_side"] == 1024 and sources.defaults["faithfulness"]["min_faithfulness"] == 0.5


@pytest.mark.parametrize("text,line,key,words", [
    ("    retry: {max_attempts: 0}\n", 12, "sources[0].retry.max_attempts", "at least 1"),
    ("    faithfulness: {min_faithfulness: 1.5}\n", 12, "sources[0].faithfulness.min_faithfulness", "at most 1.0"),
    ("    faithfulness: {judging: x}\n", 12, "sources[0].faithfulness.judging", "unknown key"),
    ("    annotations: {exhaustive_findings: 'yes'}\n", 12, "sources[0].annotations.exhaustive_findings", "must be true or false"),
    ("    storage: {url: 'ftp://host/x'}\n", 12, "sources[0].storage.url", "s3://bucket/prefix"),
    ("    expert_labels: {kind: state_dict, path: data, labels: {1: a}}\n", 12, "sources[0].expert_labels.network", "must be a mapping"),
    ("defaults:\n  faithfulness: {regenerate: -1}\n", 13, "defaults.faithfulness.regenerate", "at least 0"),
    ("retry:\n  max_attempts: 1.5\n", 13, "retry.max_attempts", "whole number"),
    ("    min_faithfulness: 0.5\n    faithfulness: {min_faithfulness: 0.6}\n", 12, "sources[0].min_faithfulness", "keep only that one"),
])
def test_the_new_sections_are_validated_naming_file_line_and_key(tmp_path, text, line, key, words):
    path = write(tmp_path, SOURCE + text)
    with pytest.raises(SourcesFileError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_sources(path)
    assert (err.value.line, err.value.key) == (line, key) and words in err.value.message, str(err.value)
    assert str(err.value).startswith(f"{path}:{line}: {key}: ")


def test_a_faithfulness_setting_at_its_old_place_still_works_with_a_deprecation_warning_naming_file_and_line(tmp_path):
    path = write(tmp_path, SOURCE + "    min_faithfulness: 0.6\n    max_contradiction_rate: 0.2\n")
    with pytest.warns(FutureWarning) as caught:
        src = load_sources(path).sources[0]
    assert (src.min_faithfulness, src.max_contradiction_rate, src.min_mean_completeness) == (0.6, 0.2, 0.8)
    assert src.faithfulness == FaithfulnessConfig(min_faithfulness=0.6, max_contradiction_rate=0.2)
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert f"{path}:12: sources[0].min_faithfulness: is deprecated here; write it as sources[0].faithfulness.min_faithfulness" in messages
    assert any(m.startswith(f"{path}:13: sources[0].max_contradiction_rate:") for m in messages)
    path = write(tmp_path, SOURCE.replace("version: 1\n", "version: 1\ndefaults:\n  min_faithfulness: 0.7\n"), "old-defaults.yaml")
    with pytest.warns(FutureWarning, match=re.escape(f"{path}:3: defaults.min_faithfulness: is deprecated here; write it as defaults.faithfulness.")):
        assert load_sources(path).sources[0].min_faithfulness == 0.7


def test_min_mean_faithfulness_is_accepted_with_a_deprecation_warning_and_the_gate_reads_min_mean_completeness(tmp_path):
    path = write(tmp_path, SOURCE + "    faithfulness: {min_mean_faithfulness: 0.9}\n")
    with pytest.warns(FutureWarning, match=re.escape(f"{path}:12: sources[0].faithfulness.min_mean_faithfulness: is deprecated and no longer checked")):
        src = load_sources(path).sources[0]
    assert (src.faithfulness.min_mean_faithfulness, src.min_mean_completeness) == (0.9, 0.8)


@pytest.mark.parametrize("text,line,key", [
    ("    faithfulness: {judge: some-model}\n", 12, "sources[0].faithfulness.judge"),
    ("    faithfulness: {regenerate: 2}\n", 12, "sources[0].faithfulness.regenerate"),
    ("    expert_labels: {kind: state_dict, path: data, labels: {1: a}, network: {name: UNet}}\n", 12, "sources[0].expert_labels"),
    ("    annotations: {exhaustive_findings: true}\n", 12, "sources[0].annotations.exhaustive_findings"),
    ("    retry: {max_attempts: 3}\n", 12, "sources[0].retry.max_attempts"),
    ("    storage: {url: 's3://my-bucket/medtrinity', options: {region: eu-west-1}}\n", 12, "sources[0].storage"),
    ("retry:\n  max_attempts: 2\n", 13, "retry.max_attempts"),
    ("storage:\n  url: out\n", 12, "storage"),
    ("defaults:\n  faithfulness: {judge: x}\n", 13, "defaults.faithfulness.judge"),
])
def test_each_setting_no_stage_reads_yet_is_accepted_with_a_warning_naming_file_line_and_key(tmp_path, text, line, key):
    path = write(tmp_path, SOURCE + text)
    with pytest.warns(UserWarning) as caught:
        sources = load_sources(path)
    messages = [str(w.message) for w in caught]
    assert messages == [f"{path}:{line}: {key}: accepted, but no stage acts on it yet"]
    assert sources.sources[0].name == "demo"


def test_new_settings_are_typed_and_a_source_inherits_the_top_level_retry_and_storage(tmp_path):
    text = SOURCE.replace("version: 1\n", "version: 1\nretry: {max_attempts: 2}\nstorage: {url: out}\n")
    text += "    expert_labels: {kind: torchscript, trust_code: true, path: data, labels: {2: liver, 1: kidney}}\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sources = load_sources(write(tmp_path, text))
    src = sources.sources[0]
    assert src.retry.max_attempts == 2 and src.storage.url == str(tmp_path / "out") and sources.storage == src.storage
    assert src.expert_labels.labels == ((1, "kidney"), (2, "liver")) and src.expert_labels.path == tmp_path / "data"
    assert hash(src) == hash(src.model_copy()) and src.plain()["retry"] == {"max_attempts": 2}


def test_the_example_sources_file_loads_without_any_warning():
    sources = quietly(EXAMPLES / "sources.yaml")
    assert len(sources.sources) >= 10


def test_the_resolved_document_of_the_examples_loads_back_to_an_equal_file(tmp_path):
    sources = quietly(EXAMPLES / "sources.yaml")
    doc = resolved_document(sources)
    assert doc["version"] == 1 and doc["defaults"]["shard_size"] == 1000
    first = doc["sources"][0]
    assert first["shard_size"] == 1000 and first["faithfulness"]["min_faithfulness"] == 1.0 and first["generator"]["prompt"] == "describe-v1"
    assert Path(first["root"]).is_absolute() and "min_faithfulness" not in first
    path, again = round_trip(sources, tmp_path)
    assert again.model_copy(update={"path": sources.path}) == sources
    assert [REGISTRY.code_version(s, "descriptions") for s in again.sources] == [REGISTRY.code_version(s, "descriptions") for s in sources.sources]


def test_the_resolved_document_of_a_file_using_every_section_loads_back_to_an_equal_file(tmp_path):
    (tmp_path / "data" / "model").mkdir(parents=True)
    (tmp_path / "hashes.txt").write_text("")
    (tmp_path / "vocab.yaml").write_text("- {term: glowing spot, category: finding}\n")
    (tmp_path / "mine.txt").write_text("Describe the {modality} image: {facts}")
    (tmp_path / "data" / "boxes.csv").write_text("")
    text = """\
version: 1
vocabulary: vocab.yaml
decontamination: {hashes: hashes.txt}
defaults: {shard_size: 50, faithfulness: {min_mean_completeness: 0.7}}
generator: {backend: openai, url: 'http://127.0.0.1:9/v1', model: m, prompt: mine.txt}
retrieval: {max_tokens: 100, collection: kb-one}
knowledge:
  - {name: notes, format: text, root: data, license: CC0-1.0, include: ['*.txt']}
sources:
  - name: vols
    modality: ct
    license: CC0-1.0
    root: data
    layout: volume_labels
    images: '(?P<case>c\\d+)_img\\.nii\\.gz'
    labels: '{case}_seg\\.nii\\.gz'
    label_map: {2: tumor, 1: liver}
    label_windows: {liver: liver}
    window: abdomen
    slice_axes: [coronal, axial]
    terms: {tumor: glowing spot}
    findings: [tumor]
    mmr: 0.5
    volume_index: middle
    quality: {severity: {outlier: warn}, description_chars: [10, 900]}
    expert: {kind: state_dict, path: data/model, network: {name: UNet, args: {channels: [8, 16]}}, labels: {1: liver}, roi_size: [64, 64]}
    generator: {backend: grounded}
    faithfulness: {min_faithfulness: 0.6}
  - name: boxed
    modality: xray
    license: CC0-1.0
    root: data
    layout: image_boxes
    images: 'images/(?P<id>[^/]+)\\.png'
    boxes: {format: csv, file: boxes.csv, box_format: xywh}
    labels_csv: {file: boxes.csv, image_column: i, label_column: l}
"""
    sources = quietly(write(tmp_path, text))
    vols, boxed = sources.sources
    assert vols.terms == (("tumor", "glowing spot"),) and vols.generator.backend == "grounded" and vols.generator.prompt == str(tmp_path / "mine.txt")
    assert boxed.generator == sources.generator and boxed.generator.prompt == str(tmp_path / "mine.txt")
    assert vols.min_faithfulness == 0.6 and vols.min_mean_completeness == 0.7 and boxed.min_faithfulness == 1.0 and vols.shard_size == 50
    assert vols.benchmark_hashes == tmp_path / "hashes.txt" and vols.vocabulary == tmp_path / "vocab.yaml"
    folder = tmp_path / "copy"
    folder.mkdir()
    path, again = round_trip(sources, folder)  # another folder: every path in the document is absolute
    assert again.model_copy(update={"path": sources.path}) == sources


def test_stage_knowledge_is_checked_by_the_stage_validators_with_file_line_and_key(tmp_path):
    assert config.STAGE_VALIDATORS == (config.imaging_config.validate, config.knowledge_config.validate, config.describe_config.validate)
    cases = [
        (SOURCE + "    window: nowhere\n", 12, "sources[0].window", "'nowhere' is not one of"),
        (SOURCE + "    label_windows: {liver: soft}\n", 12, "sources[0].label_windows.liver", "'soft' is not one of"),
        (SOURCE + "    terms: {liver: no such term at all}\n", 12, "sources[0].terms.liver", "is not a term of the vocabulary"),
        (SOURCE + "    generator: {prompt: missing.txt}\n", 12, "sources[0].generator.prompt", "neither a bundled template"),
    ]
    for text, line, key, words in cases:
        path = write(tmp_path, text)
        assert schema.parse_sources(path).sources[0].name == "demo"  # the structure is fine
        with pytest.raises(SourcesFileError) as err:
            load_sources(path)
        assert (err.value.line, err.value.key) == (line, key) and words in err.value.message, str(err.value)


def test_the_structural_schema_imports_no_stage():
    text = Path(schema.__file__).read_text()
    assert not re.search(r"^\s*(from|import)\s+medtrinity_core\.(describe|knowledge|imaging)\b", text, re.M)
    assert not re.search(r"from medtrinity_core import .*\b(describe|knowledge|imaging)\b", text)


def test_models_are_frozen_hashable_and_construct_from_python_as_the_dataclasses_did(tmp_path):
    mask = schema.MaskSpec(r"masks/{id}\.png", label="liver")
    src = SourceConfig(name="p", modality="ct", license="CC0-1.0", root=Path("/nowhere"), layout="image_masks", images=".*", masks=(mask,))
    assert {src: 1}[src.model_copy()] == 1 and src.masks[0].label == "liver"
    with pytest.raises(ValidationError, match="frozen"):
        src.name = "other"
    assert schema.RetrievalConfig.model_fields["max_tokens"].default == 160  # each default stated once, in its field
    assert REGISTRY.code_version(src, "raw") == REGISTRY.code_version(src.model_copy(), "raw") and "faithfulness" in src.plain()


@pytest.mark.parametrize("text,line,key", [
    ("    expert:\n", 12, "sources[0].expert"),
    ("    labels_csv: null\n", 12, "sources[0].labels_csv"),
    ("    faithfulness:\n", 12, "sources[0].faithfulness"),
])
def test_a_section_left_empty_in_a_source_is_an_error_never_unset(tmp_path, text, line, key):
    path = write(tmp_path, SOURCE + text)
    with pytest.raises(SourcesFileError) as err:
        load_sources(path)
    assert (err.value.line, err.value.key, err.value.message) == (line, key, "must be a mapping"), str(err.value)


def test_an_empty_decontamination_block_is_refused_not_read_as_no_exclusion(tmp_path):
    path = write(tmp_path, SOURCE.replace("version: 1\n", "version: 1\ndecontamination:\n"))
    with pytest.raises(SourcesFileError) as err:
        load_sources(path)
    assert (err.value.line, err.value.key, err.value.message) == (2, "decontamination", "must be a mapping"), str(err.value)


def test_a_non_mapping_faithfulness_beside_an_old_place_key_names_the_section(tmp_path):
    path = write(tmp_path, SOURCE + "    faithfulness: 3\n    min_faithfulness: 0.6\n")
    with pytest.raises(SourcesFileError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_sources(path)
    assert (err.value.line, err.value.key, err.value.message) == (12, "sources[0].faithfulness", "must be a mapping"), str(err.value)


@pytest.mark.parametrize("spelling", ["sources.yaml", "./sources.yaml", "{abs}"])
def test_the_cli_prints_the_files_own_warnings_however_the_path_is_spelled(tmp_path, monkeypatch, capsys, spelling):
    from medtrinity_dagster import cli

    path = write(tmp_path, SOURCE + "    min_faithfulness: 0.6\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sources", "validate", spelling.format(abs=path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "is deprecated here" in line] == [
        f"warning: {spelling.format(abs=path).removeprefix('./')}:12: sources[0].min_faithfulness: is deprecated here; write it as sources[0].faithfulness.min_faithfulness"]
