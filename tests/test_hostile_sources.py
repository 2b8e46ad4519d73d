"""A sources file written by a hostile or unlucky user: quoted booleans, alias bombs, patterns that
backtrack, files in other encodings or holding NUL bytes. Each is refused in one line naming the file,
line and key, in bounded time and memory."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from medtrinity_core.config import load_sources
from medtrinity_core.errors import SourcesFileError
from medtrinity_core.sources.patterns import (
    MATCH_TIMEOUT_S,
    PatternTimeout,
    backtracking_problem,
    compile_pattern,
)

from .conftest import REPO

SOURCE = """\
version: 1
sources:
  - name: hostile
    modality: ct
    license: CC-BY-4.0
    root: data
    layout: image_masks
    images: 'images/(?P<id>[^/]+)\\.png'
    masks:
      - pattern: 'masks/{id}\\.png'
        label: liver
"""


def write(tmp_path, text: str, name: str = "sources.yaml", encoding: str = "utf-8"):
    (tmp_path / "data" / "images").mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def refused(path) -> SourcesFileError:
    with pytest.raises(SourcesFileError) as info:
        load_sources(path)
    return info.value


BOOLEAN_KEYS = ["allow_burned_in", "proposals", "paths_identify_patients", "include_proposals"]
NOT_BOOLEANS = ["'false'", "'no'", "[false]", "0", "1", "no", "yes", "off", "'true'"]


@pytest.mark.parametrize("key", BOOLEAN_KEYS)
@pytest.mark.parametrize("value", NOT_BOOLEANS)
def test_a_boolean_key_refuses_anything_but_bare_true_or_false_naming_file_line_and_key(tmp_path, key, value):
    path = write(tmp_path, SOURCE + f"    {key}: {value}\n")
    error = refused(path)
    assert (error.line, error.key) == (12, f"sources[0].{key}")
    assert "must be true or false" in error.message
    assert str(error).startswith(f"{path}:12: sources[0].{key}:")


@pytest.mark.parametrize("key", BOOLEAN_KEYS)
@pytest.mark.parametrize("value,expected", [("true", True), ("false", False), ("True", True), ("FALSE", False)])
def test_bare_true_and_false_load_as_themselves(tmp_path, key, value, expected):
    src = load_sources(write(tmp_path, SOURCE + f"    {key}: {value}\n")).sources[0]
    assert getattr(src, key) is expected


@pytest.mark.parametrize("text,line,key", [
    ("    expert: {kind: state_dict, path: data, trust_code: 'false', labels: {1: a}, network: {name: UNet}}\n", 12, "sources[0].expert.trust_code"),
    ("retrieval: {rerun_contexts: 'no'}\n", 12, "retrieval.rerun_contexts"),
    ("    masks:\n      - pattern: 'masks/{id}\\.png'\n        label: liver\n        threshold: true\n", None, "sources[0].masks[0].threshold"),
    ("    label_map: {1: [liver]}\n", 12, "sources[0].label_map.1"),
])
def test_other_typed_keys_are_strict_too(tmp_path, text, line, key):
    base = SOURCE if "masks:\n" not in text else SOURCE.split("    masks:\n")[0]
    error = refused(write(tmp_path, base + text))
    assert error.key == key
    if line:
        assert error.line == line


def test_a_version_of_true_is_not_version_1(tmp_path):
    error = refused(write(tmp_path, SOURCE.replace("version: 1", "version: true")))
    assert (error.line, error.key) == (1, "version")


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The classic "billion laughs": each anchor a list of `width` aliases of the one before."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        name, before = chr(97 + i), chr(96 + i)
        lines.append(f"{name}: &{name} [{','.join([f'*{before}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_once_naming_its_line(tmp_path):
    bomb = SOURCE + "defaults:\n" + "\n".join("  " + line for line in alias_bomb().splitlines()) + "\n"
    assert len(alias_bomb().encode()) < 900  # the 826-byte kind of file that took 35 s and 4 GB
    start = time.perf_counter()
    error = refused(write(tmp_path, bomb))
    assert time.perf_counter() - start < 2
    assert error.key == "yaml" and "alias bomb" in error.message
    assert 13 <= error.line <= 21  # one of the nested anchors' lines


def test_a_recursive_alias_is_refused(tmp_path):
    error = refused(write(tmp_path, SOURCE + "    slice_axes: &loop [axial, *loop]\n"))
    assert error.key == "yaml" and "contains it" in error.message


def test_aliases_and_merge_keys_a_person_writes_still_load(tmp_path):
    text = SOURCE.replace("    modality: ct\n    license: CC-BY-4.0\n", "    <<: &shared {modality: ct, license: CC-BY-4.0}\n")
    text += "  - name: second\n    <<: *shared\n    root: data\n    layout: image_masks\n    images: 'images/(?P<id>[^/]+)\\.png'\n" \
            "    masks:\n      - pattern: 'masks/{id}\\.png'\n        label: liver\n"
    sources = load_sources(write(tmp_path, text))
    assert [(s.name, s.modality, s.license) for s in sources.sources] == [("hostile", "ct", "CC-BY-4.0"), ("second", "ct", "CC-BY-4.0")]


@pytest.mark.parametrize("pattern", ["(a+)+$", "images/(\\w*)*\\.png", "(?:.+)+x", "((a+))*"])
def test_a_pattern_whose_shape_backtracks_without_end_is_refused_when_the_file_is_read(tmp_path, pattern):
    error = refused(write(tmp_path, SOURCE.replace("images/(?P<id>[^/]+)\\.png", pattern).replace("{id}", "x")))
    assert (error.line, error.key) == (8, "sources[0].images")
    assert "backtracks" in error.message


@pytest.mark.parametrize("pattern", [
    "(?:[^/]+/)*(?P<id>[^/]+)\\.png",  # any folders
    "(?P<id>[0-9a-f]{64})/images/(?P=id)\\.png",  # DSB 2018's backreference
    "masks/{id}_(?P<label>[A-Za-z0-9_]+?)_\\d{{3}}\\.png",  # a template with an escaped brace
    "(\\d{3})+\\.png",
])
def test_patterns_people_write_are_not_refused(pattern):
    assert backtracking_problem(pattern) is None


def test_a_pattern_that_backtracks_on_a_name_is_stopped_by_the_time_bound_in_one_line():
    pattern = compile_pattern("(a|aa)+$", "source hostile: images")  # not a refused shape, still exponential
    assert backtracking_problem("(a|aa)+$") is None
    assert pattern.fullmatch("aaaa") is not None
    start = time.perf_counter()
    with pytest.raises(PatternTimeout) as info:
        pattern.fullmatch("a" * 60 + "b")
    assert time.perf_counter() - start < MATCH_TIMEOUT_S * 4
    assert str(info.value).startswith("source hostile: images: pattern '(a|aa)+$' took more than") and "61-character name" in str(info.value)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_utf8_with_or_without_a_bom_and_utf16_or_32_with_a_bom_are_read(tmp_path, encoding):
    text = SOURCE.replace("name: hostile", "name: hostile\n    citation: 'Müller et al., Kürbis'")
    data = text.encode(encoding) if encoding != "utf-16-be" else b"\xfe\xff" + text.encode("utf-16-be")
    src = load_sources(write(tmp_path, data)).sources[0]
    assert (src.name, src.citation) == ("hostile", "Müller et al., Kürbis")


def test_a_latin1_file_names_the_line_and_byte_offset_of_its_first_non_utf8_byte(tmp_path):
    text = SOURCE.replace("name: hostile", "name: hostile\n    citation: 'Müller'")
    error = refused(write(tmp_path, text.encode("latin-1")))
    offset = text.encode("latin-1").index(b"\xfc")
    assert (error.line, error.key) == (4, "file")
    assert f"byte 0xfc at offset {offset} is not UTF-8" in error.message


def test_a_utf16_file_without_a_bom_and_a_nul_byte_name_their_line(tmp_path):
    error = refused(write(tmp_path, SOURCE.encode("utf-16-le")))
    assert error.line == 1 and "NUL" in error.message and "UTF-16 without a byte-order mark" in error.message
    error = refused(write(tmp_path, SOURCE.replace("modality: ct", "modality: c\x00t")))
    assert (error.line, error.key) == (4, "file") and "NUL byte" in error.message and "UTF-16" not in error.message


def test_a_stray_control_character_names_its_line(tmp_path):
    error = refused(write(tmp_path, SOURCE.replace("license: CC-BY-4.0", "license: CC-BY-4.0\x1b")))
    assert (error.line, error.key) == (5, "file") and "U+001B" in error.message


HOSTILE_FILES = {
    "quoted_false.yaml": SOURCE + "    allow_burned_in: 'false'\n",
    "alias_bomb.yaml": SOURCE + "defaults:\n" + "\n".join("  " + line for line in alias_bomb().splitlines()) + "\n",
    "backtracking.yaml": SOURCE.replace("images/(?P<id>[^/]+)\\.png", "(a+)+$").replace("{id}", "x"),
    "latin1.yaml": SOURCE.replace("name: hostile", "name: hostile\n    citation: 'Müller'").encode("latin-1"),
    "nul.yaml": SOURCE.replace("modality: ct", "modality: c\x00t"),
    "utf16_no_bom.yaml": SOURCE.encode("utf-16-le"),
}


@pytest.mark.parametrize("command", ["validate", "run"])
def test_every_refused_sources_file_is_one_stderr_line_and_exit_2_for_validate_and_run(tmp_path, capsys, command):
    from medtrinity_dagster.cli import main

    for name, text in HOSTILE_FILES.items():
        path = write(tmp_path, text, name)
        args = ["sources", "validate", str(path)] if command == "validate" else ["run", "--sources", str(path), "--workdir", str(tmp_path / "wd"), "--no-progress"]
        code = main(args)
        lines = capsys.readouterr().err.strip().splitlines()
        assert (code, len(lines)) == (2, 1), (name, lines)
        assert lines[0].startswith(f"error: {path}:"), (name, lines[0])


@pytest.mark.slow
def test_a_failed_blocking_check_is_one_stderr_line_naming_source_shard_check_and_rows(tmp_path):
    """Dagster's step logs and stack traces stay in the event log; the command prints the summary."""
    from .conftest import write_tiny_source

    sources = write_tiny_source(tmp_path)
    text = sources.read_text().replace("        threshold: 128\n", "        threshold: 128\n    quality:\n      description_chars: [5000, 6000]\n")
    sources.write_text(text)
    done = subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", "run", "--sources", str(sources), "--workdir", str(tmp_path / "wd"), "--no-progress"],
                          capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1
    blocking = [line for line in lines if "descriptions_suite" in line]
    assert len(blocking) == 1, done.stderr
    assert blocking[0].startswith("error: tiny-kvasir shard base-0000: check descriptions_suite failed (blocking): description length within 5000-6000 characters: ")
    assert "Traceback" not in done.stderr and "Stack Trace" not in done.stderr and "dagster - ERROR" not in done.stderr
    assert len(lines) <= 3, done.stderr  # the blocking check, and at most a quarantine-share and a WARN check line


def test_a_root_scan_over_names_a_pattern_backtracks_on_stops_in_one_line_with_exit_2(tmp_path, capsys):
    from medtrinity_core.sources.discover import discover
    from medtrinity_dagster.cli import main

    path = write(tmp_path, SOURCE.replace("images/(?P<id>[^/]+)\\.png", "images/(?P<id>(?:a|aa)+)").replace("{id}\\.png", "{id}"))
    for n in range(3):
        (tmp_path / "data" / "images" / ("a" * (40 + n) + "b")).write_bytes(b"x")
    src = load_sources(path).sources[0]  # not a refused shape: only matching shows it
    start = time.perf_counter()
    with pytest.raises(PatternTimeout, match=r"^source hostile: images: pattern .* took more than 0.5 s on a (48|49|50)-character name"):
        discover(src)
    assert time.perf_counter() - start < 5
    assert main(["sources", "validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: source hostile: images: pattern") and "catastrophic backtracking" in err[0]


@pytest.mark.parametrize("text,key,words", [
    ("    max_quarantine_share: .nan\n", "sources[0].max_quarantine_share", "finite"),
    ("    max_quarantine_share: .inf\n", "sources[0].max_quarantine_share", "finite"),
    ("    min_faithfulness: .nan\n", "sources[0].min_faithfulness", "finite"),
    ("    min_faithfulness: 5\n", "sources[0].min_faithfulness", "at most 1.0"),
    ("    max_contradiction_rate: -.inf\n", "sources[0].max_contradiction_rate", "finite"),
    ("    min_score: 7\n", "sources[0].min_score", "at most 1.0"),
    ("    midline_band: .nan\n", "sources[0].midline_band", "finite"),
    ("    mmr: .nan\n", "sources[0].mmr", "finite"),
    ("    shard_size: 010x\n", "sources[0].shard_size", "whole number"),
    ("    shard_size: 1_000\n", "sources[0].shard_size", "whole number"),
    ("    max_side: 1:30\n", "sources[0].max_side", "whole number"),
    ("    generator: {backend: openai, url: 'http://127.0.0.1:9/v1', model: m, retries: 100000000}\n", "sources[0].generator.retries", "at most 20"),
])
def test_numbers_are_finite_in_range_and_yaml_1_2_integers(tmp_path, text, key, words):
    error = refused(write(tmp_path, SOURCE + text))
    assert (error.line, error.key) == (12, key) and words in error.message, str(error)


def test_yaml_1_2_reads_010_as_ten_and_dates_and_hex_as_strings(tmp_path):
    src = load_sources(write(tmp_path, SOURCE + "    shard_size: 010\n    body_region: 0x1F\n    citation: 2024-01-01\n")).sources[0]
    assert (src.shard_size, src.body_region, src.citation) == (10, "0x1F", "2024-01-01")


@pytest.mark.parametrize("text,line,words", [
    ("    paths_identify_patients: !!bool 'yes'\n", 12, "not a boolean"),
    ("    allow_burned_in: !!bool \"on\"\n", 12, "not a boolean"),
    ("    shard_size: !!int abc\n", 12, "not a whole number"),
    ("    citation: !!timestamp foo\n", 12, "tag !!timestamp is not allowed"),
    ("    citation: !!binary aGVsbG8=\n", 12, "tag !!binary is not allowed"),
    ("    citation: !!python/object:os.system x\n", 12, "not allowed"),
    ("    ? {a: 1}\n    : c\n", 12, "mapping key must be a plain value"),
    ("    ? [a, b]\n    : c\n", 12, "mapping key must be a plain value"),
    ("    shard_size: " + "9" * 5001 + "\n", 12, "5001 digits"),
    ("    citation: \"Jha \\ud800\"\n", 12, "lone surrogate"),
    ("    citation: \"Jha \\0 \\x1b\"\n", 12, "control character U+0000"),
])
def test_tags_keys_and_scalars_yaml_cannot_mean_here_are_one_line_with_their_line(tmp_path, text, line, words):
    error = refused(write(tmp_path, SOURCE + text))
    assert error.line == line and words in error.message, str(error)
    assert "\n" not in str(error)


def test_a_key_merged_in_with_an_override_is_no_duplicate_but_a_key_written_twice_is(tmp_path):
    text = SOURCE.replace("  - name: hostile\n", "  - &first\n    name: hostile\n")
    sources = load_sources(write(tmp_path, text + "  - <<: *first\n    name: second\n"))
    assert [(s.name, s.images) for s in sources.sources] == [("hostile", "images/(?P<id>[^/]+)\\.png"), ("second", "images/(?P<id>[^/]+)\\.png")]
    error = refused(write(tmp_path, text + "  - <<: *first\n    name: second\n    name: third\n"))
    assert (error.line, error.key) == (15, "name") and "first at line 14" in error.message


@pytest.mark.parametrize("text,line,words", [
    (SOURCE.replace("modality: ct", "modality: c\u0080t"), 4, "U+0080"),
    (SOURCE.replace("modality: ct", "modality: c\ufffet"), 4, "U+FFFE"),
    (SOURCE.replace("modality: ct", 'modality: "c\\nt"'), 4, "'c\\nt' is not one of"),
    (SOURCE.replace("    root: data\n", '    "ro\\not": data\n    root: data\n'), 6, "unknown key"),
])
def test_characters_yaml_cannot_hold_and_escaped_line_breaks_are_one_line(tmp_path, text, line, words):
    error = refused(write(tmp_path, text))
    assert error.line == line and words in str(error) and "\n" not in str(error), str(error)


def test_line_numbers_count_a_lone_cr_and_utf16_bytes_like_yaml(tmp_path):
    text = SOURCE.replace("name: hostile", "name: hostile\n    citation: 'Müller'").replace("\n", "\r")
    error = refused(write(tmp_path, text.encode("latin-1")))
    assert error.line == 4 and "0xfc" in error.message
    data = SOURCE.encode("utf-16")
    broken = data[: len(data) // 2 * 2 - 40] + b"\x00\xd8" + data[len(data) // 2 * 2 - 40:]  # a lone high surrogate near the end
    error = refused(write(tmp_path, broken))
    assert error.line and error.line > 5 and "UTF-16" in error.message


def test_a_long_list_without_aliases_is_no_alias_bomb(tmp_path):
    labels = ", ".join(f"l{i}" for i in range(100_001))
    src = load_sources(write(tmp_path, SOURCE + f"    findings: [{labels}]\n")).sources[0]
    assert len(src.findings) == 100_001


def test_counted_repeats_nested_too_deep_to_compile_are_refused_in_images_and_templates(tmp_path):
    error = refused(write(tmp_path, SOURCE.replace("images/(?P<id>[^/]+)\\.png", "(?:(?:a{1000}){1000}){1000}").replace("{id}", "x")))
    assert error.key == "sources[0].images" and "gigabytes" in error.message
    error = refused(write(tmp_path, SOURCE.replace("masks/{id}\\.png", "masks/{id}(?:(?:x{{1000}}){{1000}}){{1000}}\\.png")))
    assert error.key == "sources[0].masks[0].pattern" and "gigabytes" in error.message
    assert backtracking_problem("(a++)+b") is None and backtracking_problem("(?>a+)+b") is None  # give nothing back: fine


def test_a_scan_whose_matches_are_each_slow_but_under_the_bound_stops_on_its_budget(monkeypatch):
    from medtrinity_core.sources import patterns

    monkeypatch.setattr(patterns, "SCAN_BUDGET_S", 0.3)
    pattern = compile_pattern("[0-9]+(a|aa)+b", "source slow: images")
    length = 18
    while True:  # a name slow enough on this machine: over SLOW_MATCH_S (a path's match takes microseconds), under MATCH_TIMEOUT_S
        start = time.perf_counter()
        pattern.fullmatch("001" + "a" * length)
        if time.perf_counter() - start > 2 * patterns.SLOW_MATCH_S:
            break
        length += 1
    pattern = compile_pattern("[0-9]+(a|aa)+b", "source slow: images")  # its budget starts afresh
    names = ["001" + "a" * length] * 200
    start = time.perf_counter()
    with pytest.raises(PatternTimeout, match=r"^source slow: images: pattern .* took [0-9.]+ s over \d+ names"):
        for name in names:
            pattern.fullmatch(name)
    assert time.perf_counter() - start < 5


def test_the_vocabulary_file_a_sources_file_names_is_read_as_strictly(tmp_path):
    (tmp_path / "vocab.yaml").write_text("terms:\n" + "\n".join("  " + line for line in alias_bomb().splitlines()) + "\n")
    start = time.perf_counter()
    error = refused(write(tmp_path, "vocabulary: vocab.yaml\n" + SOURCE))
    assert time.perf_counter() - start < 2
    assert (error.line, error.key) == (1, "vocabulary") and "vocab.yaml:" in error.message and "alias bomb" in error.message


def test_a_template_stopped_by_its_time_bound_names_the_source_and_template_never_the_paths_values(tmp_path):
    from medtrinity_core.sources.discover import discover

    path = write(tmp_path, SOURCE.replace("masks/{id}\\.png", "masks/{id}(?:a|aa)+b"))
    (tmp_path / "data" / "masks").mkdir()
    (tmp_path / "data" / "images" / "DOE_JOHN_8675309.png").write_bytes(b"x")
    (tmp_path / "data" / "masks" / ("DOE_JOHN_8675309" + "a" * 40 + "c")).write_bytes(b"x")
    with pytest.raises(PatternTimeout) as info:
        discover(load_sources(path).sources[0])
    message = str(info.value)
    assert message.startswith("source hostile: masks[0].pattern: pattern 'masks/{id}(?:a|aa)+b' took more than")
    assert "DOE" not in message and "8675309" not in message
