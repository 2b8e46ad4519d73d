"""The sources file's structure: typed pydantic models, validated with errors that name the file, line and key.

Each section of the file is a frozen pydantic model (hashable: caches are keyed by them) whose fields state
their type, bound and default once. Constructed in Python, a model trusts its caller (pydantic's own type
checks only); validated from a sources file (`parse_sources`, which passes the file's folder as validation
context) every key is checked as strictly as YAML allows: bare true/false only, whole numbers for counts,
finite numbers within their range, patterns that compile and cannot backtrack without end, folders that
exist, files inside the source root. A pydantic error is reported as `file:line: key.path: message`, its
location mapped to the line of the key through `yaml_lines`' line tracking (`Locator`).

What needs a stage's knowledge (CT window names, the vocabulary, prompt templates) is not checked here:
`medtrinity_core.config.load_sources` runs this structural parse and then the stages' own validators
(`medtrinity_core.{imaging,knowledge,describe}.config`), which report through the same `Locator`.
"""

from __future__ import annotations

import json
import math
import re
import string
import warnings
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from medtrinity_core.errors import SourcesFileError
from medtrinity_core.modalities import MODALITIES
from medtrinity_core.sources.patterns import backtracking_problem
from medtrinity_core.sources.yaml_lines import (
    DuplicateKey,
    LineDict,
    YamlRefused,
    decode_sources_text,
    load_with_lines,
)

LAYOUTS = ("image_masks", "volume_labels", "dicom", "labeled_images", "image_boxes")
BOX_FORMATS = ("coco", "yolo", "csv")
EXPERT_KINDS = ("torchscript", "state_dict", "bundle", "precomputed")  # precomputed: the tool's output files (PrecomputedExpert)
# The tools whose output files a precomputed expert reads, and the model each is recorded as unless the
# source names its own (`model_id`); a label map is any tool's, so it must be named.
PRECOMPUTED_FORMATS = {"totalsegmentator": "TotalSegmentator", "cellpose": "Cellpose", "hovernet": "HoVer-Net", "chexmask": "CheXmask", "label_map": None}
# Networks a state dict may be loaded into: plain constructors of monai.networks.nets with plain arguments.
ALLOWED_NETWORKS = ("UNet", "BasicUNet", "AttentionUnet", "SegResNet", "DynUNet", "UNETR", "SwinUNETR")
CODE_KINDS = ("torchscript", "bundle")  # TorchScript is code; a bundle's config evaluates expressions
BACKENDS = ("grounded", "transformers", "openai")
ORIENTATIONS = ("radiological_axial", "radiological_coronal", "chest_pa")
VOLUME_INDEX = ("first", "middle", "all")
SLICE_AXES = ("axial", "coronal", "sagittal")
CORPUS_FORMATS = ("medquad", "jsonl", "text")
QUALITY_KEYS = ("severity", "label_ranges", "description_chars")
SEVERITY_NAMES = ("empty_mask", "duplicate_mask", "outlier", "length", "patient_data")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
LICENSE_RE = re.compile(r"^(LicenseRef-[A-Za-z0-9.\-]+|[A-Za-z0-9][A-Za-z0-9.\-+]*)$")
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
S3_URL = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?$")
# Per-source numbers the file's `defaults:` section may set for every source, and the faithfulness
# settings that moved into `faithfulness:` (still accepted at their old place, with a FutureWarning: the
# deprecation category Python shows to users).
DEFAULTABLE = ("shard_size", "max_side", "negatives_per_volume", "min_roi_pixels", "min_roi_fraction", "top_k", "near_distance",
               "max_quarantine_share", "max_voxels", "min_score")
FAITHFULNESS_MOVED = ("min_faithfulness", "min_mean_faithfulness", "max_contradiction_rate")


# --- checks of one value (run when a sources file is validated; Python callers are trusted) ----------

class _Text:
    """Marks a field read as text: a null leaves it unset (its default, or "is required")."""


TEXT = _Text()


def _fail(message: str, at: tuple = (), line_at: tuple | None = None):
    """An error for the value being validated: `at` names a key under it (a label map's entry), and
    `line_at` the key whose line the error names when that is another one (`layout` for a missing `boxes`)."""
    raise PydanticCustomError("sources", "{message}", {"message": message, "at": tuple(at), "line_at": line_at})


def _from_file(info: ValidationInfo) -> bool:
    return bool(info.context) and "base" in info.context


def _shown(value) -> str:
    """A value as the error names it: its YAML type and a short repr."""
    kind = {str: "the string", int: "the number", float: "the number", list: "a list", LineDict: "a mapping", dict: "a mapping",
            type(None): "null"}.get(type(value), type(value).__name__)
    text = repr(value) if not isinstance(value, (list, dict)) else repr(value)[:40]
    return f"{kind} {text}" if value is not None else kind


def _whole(value) -> bool:
    """A whole number, and not a boolean (YAML's `true` is Python's 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _string_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _text(value, info: ValidationInfo):
    if not _from_file(info) or value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        _fail("must be a string")
    return str(value)


def _regex_problem(value: str) -> None:
    try:
        re.compile(value.replace("{{", "{").replace("}}", "}") if "{" in value else value)
    except re.error as exc:
        _fail(f"is not a valid regular expression ({exc})")
    problem = backtracking_problem(value)
    if problem:
        _fail(f"is refused: {problem}")


def _pattern(value, info: ValidationInfo):
    value = _text(value, info)
    if _from_file(info) and value is not None:
        _regex_problem(value)
    return value


def _one_of(options, message: str | None = None):
    def check(value, info: ValidationInfo):
        value = _text(value, info)
        if _from_file(info) and value is not None and value not in options:
            _fail(message or f"'{value}' is not one of {', '.join(options)}")
        return value
    return BeforeValidator(check)


def _matching(regex: str, message: str):
    def check(value, info: ValidationInfo):
        value = _text(value, info)
        if _from_file(info) and value is not None and not re.fullmatch(regex, value):
            _fail(message)
        return value
    return BeforeValidator(check)


def _flag(value, info: ValidationInfo):
    """YAML's bare `true` or `false` only: a quoted 'false', `no`, `0` or `[false]` is an error, never read as true."""
    if _from_file(info) and not isinstance(value, bool):
        hint = " (YAML 1.1's yes/no/on/off are not booleans here)" if isinstance(value, str) and value.lower() in ("yes", "no", "on", "off", "y", "n") else ""
        _fail(f"must be true or false (unquoted), not {_shown(value)}{hint}")
    return value


def _number(kind: type, minimum: float, maximum: float | None, optional: bool = False):
    """A number: whole for `kind` int, finite always (`.nan` compares false with every threshold and `.inf`
    passes every one), from `minimum` to `maximum`."""
    def check(value, info: ValidationInfo):
        if not _from_file(info) or (optional and value is None):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            _fail(f"must be a {'whole ' if kind is int else ''}number, not {_shown(value)}")
        if not math.isfinite(value):
            _fail(f"must be a finite number, not {value}")
        if value < minimum:
            _fail(f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            _fail(f"must be at most {maximum}")
        return kind(value)
    return BeforeValidator(check)


def Int(minimum: int = 0, maximum: int | None = None):  # noqa: N802 - a type
    return Annotated[int, _number(int, minimum, maximum)]


def Float(minimum: float = 0, maximum: float | None = None):  # noqa: N802 - a type
    return Annotated[float, _number(float, minimum, maximum)]


def _under_base(what: str):
    """A path relative to the sources file's folder, resolved; `what` it must be: dir, file or any."""
    def check(value, info: ValidationInfo):
        if not _from_file(info) or value is None:
            return value
        path = (info.context["base"] / _text(value, info)).resolve()
        if what == "dir" and not path.is_dir():
            _fail(f"folder {path} does not exist")
        if what == "file" and not path.is_file():
            _fail(f"file {path} does not exist")
        if what == "any" and not path.exists():
            _fail(f"{path} does not exist")
        return path
    return BeforeValidator(check)


def _label_pairs(value, names_allowed: bool = False) -> tuple:
    """A mapping of label values (whole numbers; names too where allowed) to label names, sorted."""
    value = value or {}
    if not isinstance(value, dict):
        _fail("must map label values to names")
    out = []
    for k, v in value.items():
        if isinstance(k, bool) or not isinstance(k, (int, str)) or (isinstance(k, str) and not names_allowed):
            _fail("label values must be whole numbers", at=(k,))
        if not isinstance(v, str) or not v.strip():
            _fail(f"must be a label name (a string), not {_shown(v)}", at=(k,))
        out.append((k, v))
    return tuple(sorted(out, key=lambda kv: (isinstance(kv[0], str), kv[0])))


def _label_map(value, info: ValidationInfo):
    return _label_pairs(value) if _from_file(info) else value


def _text_pairs(message: str, sort: bool = True):
    """A mapping of strings to strings, as sorted (or ordered) pairs: hashable."""
    def check(value, info: ValidationInfo):
        if not _from_file(info):
            return value
        value = value or {}
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            _fail(message)
        pairs = [(str(k), str(v)) for k, v in value.items()]
        return tuple(sorted(pairs)) if sort else tuple(pairs)
    return BeforeValidator(check)


def _plain(value) -> bool:
    """Numbers, strings, booleans, null, and lists or mappings of them: nothing a config could evaluate."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and not k.startswith("_") and _plain(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float, str))


Text = Annotated[str | None, BeforeValidator(_text), TEXT]
RequiredText = Annotated[str, BeforeValidator(_text), TEXT]
Flag = Annotated[bool, BeforeValidator(_flag)]
Fraction = Float(0, 1.0)
LabelMap = Annotated[tuple[tuple[int, str], ...], BeforeValidator(_label_map)]


def _check_inside(value: str | None, root: Path, at: tuple) -> None:
    if value is None:
        return
    try:
        resolved = (root / value).resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a symlink loop
        _fail(f"{value} is a symlink loop", at=at)
    if not resolved.is_relative_to(root):
        _fail(f"{value} resolves outside the source root {root}; only files under the root are read", at=at)


# --- the sections -----------------------------------------------------------------------------------

class Section(BaseModel):
    """A section of the sources file: frozen, no unknown keys. Validated from the file, its keys are
    checked first (`unknown key (allowed: ...)`), a null text value counts as unset, and `_from_yaml`
    may reshape the mapping; positional construction follows field order (as the dataclasses did)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    NOT_IN_FILE: ClassVar[frozenset[str]] = frozenset()  # fields the parser fills in, never a key of the file

    def __init__(self, *args, **kwargs):
        kwargs.update(zip(type(self).model_fields, args))
        super().__init__(**kwargs)

    __init__.__pydantic_base_init__ = True  # validation from a mapping bypasses it and keeps its context

    @classmethod
    def file_keys(cls) -> list[str]:
        return sorted(set(cls.model_fields) - cls.NOT_IN_FILE)

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data, info: ValidationInfo):
        if not _from_file(info) or isinstance(data, BaseModel):
            return data
        if not isinstance(data, dict):
            _fail("must be a mapping")
        allowed = cls.file_keys()
        for key in data:
            if key not in allowed:
                _fail(f"unknown key (allowed: {', '.join(allowed)})", at=(key,))
        fields = cls.model_fields
        data = {k: v for k, v in data.items() if not (v is None and any(m is TEXT for m in fields[k].metadata))}
        return cls._from_yaml(data, info)

    @classmethod
    def _from_yaml(cls, data: dict, info: ValidationInfo) -> dict:
        return data


class FaithfulnessConfig(Section):
    """How descriptions are judged against their facts, and what a low score does."""

    min_faithfulness: Fraction = 1.0  # a description scoring under this (1.0: with any contradiction) stays in its manifest, excluded from triplets
    min_completeness: Fraction = 0.6  # ...and so does one stating less than this share of its facts
    max_contradiction_rate: Fraction = 0.05  # the descriptions check fails a partition whose share of descriptions with a contradiction is over this
    min_mean_completeness: Fraction = 0.8  # ...or whose mean completeness is under this
    min_mean_faithfulness: Annotated[float | None, _number(float, 0, 1.0, optional=True)] = None  # deprecated: no longer checked (see min_mean_completeness)
    judge: Text = None  # the model that scores faithfulness; None: the built-in claim checker
    regenerate: Int(0, 10) = 0  # times a description under min_faithfulness is written again before it is excluded


class AnnotationsConfig(Section):
    """What a source's annotations promise."""

    exhaustive_findings: Flag = False  # every finding of every image is annotated: an unlabelled image shows none


class RetryConfig(Section):
    """How often a failed partition is tried (the top-level `retry:` and a source's own)."""

    max_attempts: Int(1, 100) = 1


def _storage_url(value, info: ValidationInfo):
    value = _text(value, info)
    if not _from_file(info) or value is None:
        return value
    if value.startswith("s3://"):
        if not S3_URL.match(value):
            _fail("must be s3://bucket/prefix with a valid bucket name")
        return value
    if value.startswith("file://"):
        if len(value) == len("file://"):
            _fail("must name a folder after file://")
        return value
    if "://" in value:
        _fail("must be a local path, file://path or s3://bucket/prefix")
    return str((info.context["base"] / value).resolve())


class StorageConfig(Section):
    """Where outputs are written: a local folder (relative to the sources file), file://path or s3://bucket/prefix."""

    url: Annotated[str, BeforeValidator(_storage_url), TEXT]
    options: Annotated[tuple[tuple[str, str], ...], _text_pairs("must map option names to values (strings)")] = ()  # e.g. endpoint_url, region


def _mask_threshold(value, info: ValidationInfo):
    if _from_file(info) and value is not None and (not _whole(value) or not 0 <= value < 256):
        _fail("must be a whole number from 0 to 255")
    return value


class MaskSpec(Section):
    pattern: Annotated[str, BeforeValidator(_pattern), TEXT]
    label: Text = None
    label_words: Annotated[tuple[tuple[str, str], ...], _text_pairs("must map characters to replacements (strings)", sort=False)] = ()
    threshold: Annotated[int | None, BeforeValidator(_mask_threshold)] = None  # None: any non-zero pixel (lossless masks); JPEG masks default to 128
    instances: Annotated[str | None, _one_of(("per_file",), "must be per_file"), TEXT] = None  # "per_file": each mask file is one instance
    label_map: LabelMap = ()  # a label PNG: pixel value -> label name

    @model_validator(mode="after")
    def _labelled(self, info: ValidationInfo):
        if _from_file(info) and self.label is None and not self.label_map and "(?P<label>" not in self.pattern:
            _fail("needs a named group `label`, a fixed `label` key or a `label_map`", at=("pattern",))
        return self


class LabelsCsv(Section):
    file: RequiredText
    image_column: RequiredText
    label_column: RequiredText


def _classes(value, info: ValidationInfo):
    if _from_file(info) and (not _string_list(value) or not all(c.strip() for c in value)):
        _fail("must list class names (non-empty strings)")
    return value


def _box_columns(value, info: ValidationInfo):
    if _from_file(info) and (not _string_list(value) or len(value) != 4):
        _fail("must list four column names")
    return value


class BoxSpec(Section):
    """Ground-truth boxes: a COCO JSON file, YOLO text files (one per image), or a CSV table."""

    format: Annotated[str, _one_of(BOX_FORMATS), TEXT]
    file: Text = None  # coco, csv
    pattern: Text = None  # yolo: template of the label file, e.g. 'labels/{id}\\.txt'
    classes: Annotated[tuple[str, ...], BeforeValidator(_classes)] = ()  # yolo: class index -> label
    image_column: Text = "image"
    label_column: Text = "label"
    box_columns: Annotated[tuple[str, ...], BeforeValidator(_box_columns)] = ("x0", "y0", "x1", "y1")
    box_format: Annotated[str, _one_of(("xyxy", "xywh")), TEXT] = "xyxy"  # csv: xyxy or xywh (pixels)

    @model_validator(mode="after")
    def _per_format(self, info: ValidationInfo):
        if not _from_file(info):
            return self
        if self.format in ("coco", "csv") and self.file is None:
            _fail("is required", at=("file",))
        if self.format == "yolo":
            if self.pattern is None:
                _fail("is required", at=("pattern",))
            try:
                _regex_problem(self.pattern)
            except PydanticCustomError as exc:
                _fail(exc.context["message"], at=("pattern",))
            if not self.classes:
                _fail("yolo boxes need the list of class names", at=("classes",))
        return self


def _expert_labels(value, info: ValidationInfo):
    if not _from_file(info):
        return value
    labels = _label_pairs(value)
    if not labels:
        _fail("must map output channels (1, 2, ...) to label names")
    return labels


def _roi_size(value, info: ValidationInfo):
    if _from_file(info) and not (isinstance(value, list) and len(value) == 2 and all(_whole(v) and v > 0 for v in value)):
        _fail("must be two positive whole numbers")
    return value


class ExpertSpec(Section):
    """A segmentation model run through MONAI's sliding-window inference (in the file, a state dict's
    network is `network: {name: UNet, args: {...}}`)."""

    NOT_IN_FILE: ClassVar[frozenset[str]] = frozenset({"network_args"})

    kind: Annotated[str, _one_of(EXPERT_KINDS), TEXT]  # torchscript | state_dict | bundle
    path: Annotated[Path, _under_base("any"), TEXT]
    labels: Annotated[tuple[tuple[int, str], ...], BeforeValidator(_expert_labels)]
    network: Text = None  # state_dict: a class in monai.networks.nets
    network_args: str = "{}"  # JSON of its keyword arguments
    roi_size: Annotated[tuple[int, int], BeforeValidator(_roi_size)] = (96, 96)
    sw_batch_size: Int(1, 4096) = 4
    overlap: Float(0, 0.99) = 0.25
    batch_size: Int(1, 4096) = 8
    in_channels: Int(1, 64) = 1
    device: Text = "auto"  # auto: CUDA when present
    trust_code: Flag = False  # torchscript and bundle run code from the model files: the source must opt in
    min_confidence: Fraction = 0.5  # an ROI whose mean foreground probability is under this is flagged low_confidence

    @property
    def precomputed(self) -> bool:
        return False

    @classmethod
    def _from_yaml(cls, data: dict, info: ValidationInfo) -> dict:
        if "labels" not in data:
            _fail("must map output channels (1, 2, ...) to label names", at=("labels",))
        data.pop("network_args", None)
        net = data.pop("network", None)
        if data.get("kind") != "state_dict":
            return data
        if not isinstance(net, dict):
            _fail("must be a mapping", at=("network",))
        name = net.get("name")
        if name is None:
            _fail("is required", at=("network", "name"))
        if isinstance(name, bool) or not isinstance(name, (str, int, float)):
            _fail("must be a string", at=("network", "name"))
        if str(name) not in ALLOWED_NETWORKS:
            _fail(f"'{name}' is not one of {', '.join(ALLOWED_NETWORKS)}", at=("network", "name"))
        arguments = net.get("args") or {}
        if not isinstance(arguments, dict) or not _plain(arguments):
            _fail("must map argument names to numbers, strings, booleans or lists of them", at=("network", "args"))
        return {**data, "network": str(name), "network_args": json.dumps(dict(arguments), sort_keys=True)}

    @model_validator(mode="after")
    def _trusted(self, info: ValidationInfo):
        if _from_file(info) and self.kind in CODE_KINDS and not self.trust_code:
            what = "TorchScript is code" if self.kind == "torchscript" else "a MONAI bundle's config evaluates expressions"
            _fail(f"{self.kind} runs code from the model files on load ({what}); set `trust_code: true` to accept that, or use kind state_dict (weights only)",
                  at=("kind",))
        return self


def _type_info(value, info: ValidationInfo):
    value = _text(value, info)
    if _from_file(info) and value is not None and not value.endswith(".json"):
        _fail("must name a JSON file (HoVer-Net's type_info.json)")
    return value


class PrecomputedExpert(Section):
    """An expert model's output files, as the tool wrote them when it was run offline: TotalSegmentator's
    per-structure NIfTI folder or `--ml` multilabel file, Cellpose's masks, HoVer-Net's JSON, the CheXmask
    CSV of a dataset, or any integer label image or volume (`label_map`)."""

    kind: Annotated[str, _one_of(("precomputed",)), TEXT]
    format: Annotated[str, _one_of(tuple(PRECOMPUTED_FORMATS)), TEXT]
    pattern: Text = None  # a template like the masks': where the output for an image or volume lies (all formats but chexmask)
    file: Text = None  # chexmask: the dataset's one CSV (.csv or .csv.gz), under the source root
    id_column: Text = "Image ID"  # chexmask: the column naming the image (its name differs per CheXmask dataset)
    type_info: Annotated[str | None, BeforeValidator(_type_info), TEXT] = None  # hovernet: type id -> [name, colour], under the source root
    labels: LabelMap = ()  # label_map (required) and hovernet: value or type id -> label name
    label: Text = None  # cellpose: the one name of every instance (default: cell)
    model_id: Text = None  # recorded with every ROI; default: the tool's name
    model_version: Text = None
    min_confidence: Fraction = 0.5  # an ROI whose tool-given confidence is under this is flagged low_confidence
    trust_code: Flag = False  # cellpose's _seg.npy: unpickled without the allow-list of arrays, dicts, lists, numbers and strings

    @property
    def precomputed(self) -> bool:
        return True

    @property
    def model(self) -> str:
        """The model as every ROI records it: id and version."""
        name = self.model_id or PRECOMPUTED_FORMATS[self.format] or "label map"
        return f"{name} {self.model_version}" if self.model_version else name

    @property
    def instance_label(self) -> str:
        return self.label or "cell"

    @model_validator(mode="after")
    def _per_format(self, info: ValidationInfo):
        if not _from_file(info):
            return self
        if self.format == "chexmask":
            if self.file is None:
                _fail("chexmask reads the dataset's one CSV: `file` is required", at=("file",))
            if self.pattern is not None:
                _fail("chexmask reads `file`, not a per-image `pattern`", at=("pattern",))
        elif self.pattern is None:
            _fail(f"{self.format} outputs need a `pattern` (where the output of each image or volume lies)", at=("pattern",))
        else:
            try:
                _regex_problem(self.pattern)
            except PydanticCustomError as exc:
                _fail(exc.context["message"], at=("pattern",))
        if self.format == "label_map":
            if not self.labels:
                _fail("a label_map output needs `labels` (value -> name)", at=("labels",))
            if self.model_id is None:
                _fail("a label_map output needs `model_id`: the model that wrote it", at=("model_id",))
        for key, formats in (("file", ("chexmask",)), ("type_info", ("hovernet",)), ("label", ("cellpose",)), ("labels", ("label_map", "hovernet"))):
            if key in self.model_fields_set and self.format not in formats:
                _fail(f"is read for {' and '.join(formats)} outputs only, not {self.format}", at=(key,))
        if "id_column" in self.model_fields_set and self.format != "chexmask":
            _fail(f"is read for chexmask outputs only, not {self.format}", at=("id_column",))
        if self.trust_code and self.format != "cellpose":
            _fail(f"is read for cellpose outputs only (its _seg.npy), not {self.format}", at=("trust_code",))
        return self


def _expert_kind(value) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "expert:precomputed" if kind == "precomputed" else "expert:model"


# `expert:` is a model run by the pipeline or a tool's output files, told apart by `kind` (the tags are
# dropped from error locations: they are no key of the file)
Expert = Annotated[Annotated[ExpertSpec, Tag("expert:model")] | Annotated[PrecomputedExpert, Tag("expert:precomputed")], Discriminator(_expert_kind)]
UNION_TAGS = ("expert:model", "expert:precomputed")


class GeneratorSpec(Section):
    """Which backend writes the descriptions (the sources file's `generator:`, per source or top level)."""

    backend: Annotated[str, _one_of(BACKENDS), TEXT] = "grounded"
    model: Text = None  # transformers: a local model folder; openai: the model name the server serves
    url: Text = None  # openai: the server's base URL, e.g. http://127.0.0.1:8000/v1
    api_key_env: Annotated[str | None, _matching(ENV_NAME, "must name an environment variable (the key itself never goes in the file)"), TEXT] = None
    prompt: Text = "describe-v1"  # a prompt template bundled in medtrinity_core/describe/prompts, or a path to one
    max_new_tokens: Int(1, 32_768) = 384
    temperature: Float(0, 2.0) = 0.0  # 0: greedy
    concurrency: Int(1, 1024) = 4  # openai: requests in flight
    timeout_s: Float(0, 3600.0) = 60.0  # openai: per request
    retries: Int(0, 20) = 4  # openai: on 429, 5xx, timeouts and malformed answers
    backoff_s: Float(0, 60.0) = 0.5  # openai: first back-off; doubled each retry, with jitter
    batch_size: Int(1, 4096) = 4  # transformers: images per forward pass
    device: Annotated[str, _matching(r"auto|cpu|cuda|cuda:\d+", "must be auto, cpu, cuda or cuda:N"), TEXT] = "auto"  # transformers: auto (CUDA when present), cuda:N
    dtype: Annotated[str, _matching(r"auto|bfloat16|float16|float32", "must be auto, bfloat16, float16 or float32"), TEXT] = "auto"  # transformers: auto (bf16 on CUDA)

    @model_validator(mode="after")
    def _backend_needs(self, info: ValidationInfo):
        if not _from_file(info):
            return self
        if self.backend == "transformers":
            if not self.model:
                _fail("the transformers backend needs `model`: a local model folder", at=("model",), line_at=("backend",))
            folder = (info.context["base"] / self.model).resolve()
            if not folder.is_dir():
                _fail(f"folder {folder} does not exist", at=("model",), line_at=("model",) if "model" in self.model_fields_set else ("backend",))
            return self.model_copy(update={"model": str(folder)})
        if self.backend == "openai":
            if not (self.url and self.model):
                _fail("the openai backend needs `url` (the server's base URL, e.g. http://127.0.0.1:8000/v1) and `model`", at=("url",), line_at=("backend",))
            if not re.match(r"^https?://", self.url):
                _fail("must start with http:// or https://", at=("url",))
        return self


def _quality(value, info: ValidationInfo) -> str:
    """`quality:` severities (error | warn) of the suites' expectations, per-label ranges of area ratio and
    count, and description length bounds; kept as JSON (the config stays hashable)."""
    if not _from_file(info):
        return value
    if not isinstance(value, dict):
        _fail("must be a mapping")
    for key in value:
        if key not in QUALITY_KEYS:
            _fail(f"unknown key (allowed: {', '.join(sorted(QUALITY_KEYS))})", at=(key,))

    def pair(v) -> bool:
        return isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) and v[0] <= v[1]

    severity = value.get("severity") or {}
    if not isinstance(severity, dict):
        _fail(f"must map expectations ({', '.join(SEVERITY_NAMES)}) to error or warn", at=("severity",))
    for name, level in severity.items():
        if name not in SEVERITY_NAMES:
            _fail(f"unknown expectation (known: {', '.join(SEVERITY_NAMES)})", at=("severity", name))
        if level is not None and (isinstance(level, bool) or not isinstance(level, (str, int, float))):
            _fail("must be a string", at=("severity", name))
        if level is not None and str(level) not in ("error", "warn"):
            _fail(f"'{level}' is not one of error, warn", at=("severity", name))
    ranges = value.get("label_ranges") or {}
    if not isinstance(ranges, dict):
        _fail("must map labels to {area_ratio: [lo, hi], count: [lo, hi]}", at=("label_ranges",))
    for label, spec in ranges.items():
        if not isinstance(spec, dict) or set(spec) - {"area_ratio", "count"} or not all(pair(v) for v in spec.values()):
            _fail("must be {area_ratio: [lo, hi], count: [lo, hi]} with lo <= hi", at=("label_ranges", label))
    chars = value.get("description_chars")
    if chars is not None and not pair(chars):
        _fail("must be [min, max] characters", at=("description_chars",))
    return json.dumps({"severity": dict(severity), "label_ranges": {k: dict(v) for k, v in ranges.items()}, **({"description_chars": chars} if chars else {})},
                      sort_keys=True)


def _slice_axes(value, info: ValidationInfo):
    if not _from_file(info):
        return value
    if not isinstance(value, list) or not value or any(a not in SLICE_AXES for a in value):
        _fail("must list one or more of axial, coronal, sagittal")
    return tuple(dict.fromkeys(value))


def _volume_index(value, info: ValidationInfo):
    if not _from_file(info) or value is None or (_whole(value) and value >= 0) or value in VOLUME_INDEX:
        return value
    _fail(f"must be one of {', '.join(VOLUME_INDEX)} or a whole number from 0")


def _midline_band(value, info: ValidationInfo):
    if _from_file(info) and value >= 0.5:
        _fail("must be below 0.5 (a share of the body's width on each side of its centre)")
    return value


def _mmr(value, info: ValidationInfo):
    if _from_file(info) and value is not None and value > 1:
        _fail("must be from 0 (diversity only) to 1 (relevance only)")
    return value


def _terms(value, info: ValidationInfo):
    """`terms: {GGO: ground-glass opacity}` as sorted pairs; that each target is a vocabulary term is the
    knowledge stage's check (medtrinity_core.knowledge.config)."""
    if not _from_file(info):
        return value
    value = value or {}
    if not isinstance(value, dict):
        _fail("must map source labels to canonical vocabulary terms")
    for label, target in value.items():
        if not isinstance(target, str):
            _fail(f"must be a vocabulary term (a string), not {_shown(target)}", at=(label,))
    return tuple(sorted((str(label), target) for label, target in value.items()))


def _findings(value, info: ValidationInfo):
    if not _from_file(info):
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail("must list the source's labels that are findings")
    return tuple(sorted(set(value)))


def _label_windows(value, info: ValidationInfo):
    """Label name -> CT window preset, as sorted pairs; the preset names are the imaging stage's check."""
    if not _from_file(info):
        return value
    value = value or {}
    if not isinstance(value, dict):
        _fail("must map label names to CT window presets")
    for name, preset in value.items():
        if preset is not None and (isinstance(preset, bool) or not isinstance(preset, (str, int, float))):
            _fail("must be a string", at=(name,))
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


VOLUME_FORMATS = ("totalsegmentator", "label_map")  # outputs a volume has; every format but totalsegmentator labels 2D images


def _check_precomputed(source, expert: PrecomputedExpert) -> None:
    if source.layout == "dicom":
        _fail("precomputed expert outputs are read for image and volume files, not yet for DICOM series (convert the series to NIfTI as the tool did)",
              at=("expert", "kind"))
    if source.layout == "volume_labels" and expert.format not in VOLUME_FORMATS:
        _fail(f"{expert.format} writes 2D outputs; a volume_labels source reads totalsegmentator or label_map outputs", at=("expert", "format"))
    if source.layout != "volume_labels" and expert.format == "totalsegmentator":
        _fail(f"totalsegmentator writes NIfTI volumes; a {source.layout} source holds 2D images (use layout volume_labels)", at=("expert", "format"))


class SourceConfig(Section):
    """One source of the sources file: where its files are, how they are read, and each stage's settings."""

    NOT_IN_FILE: ClassVar[frozenset[str]] = frozenset({"vocabulary", "benchmark_hashes", "drop"})

    name: Annotated[str, _matching(NAME_RE.pattern, "must be lower-case letters, digits and '-' (2-63 characters)"), TEXT]
    modality: Annotated[str, _one_of(tuple(MODALITIES)), TEXT]
    license: Annotated[str, _matching(LICENSE_RE.pattern, "must be an SPDX identifier or LicenseRef-<name>"), TEXT]
    root: Annotated[Path, _under_base("dir"), TEXT]
    layout: Annotated[str, _one_of(LAYOUTS), TEXT]
    images: Annotated[str, BeforeValidator(_pattern), TEXT]
    body_region: Text = None
    license_note: Text = None
    citation: Text = None
    masks: tuple[MaskSpec, ...] = ()
    labels: Text = None
    label_map: tuple[tuple[int | str, str], ...] = ()  # value -> name (label volumes), or name -> name (DICOM segments)
    label: Text = None
    labels_csv: LabelsCsv | None = None
    window: Text = None  # a CT window preset (checked by medtrinity_core.imaging.config)
    paths_identify_patients: Flag = False
    allow_burned_in: Flag = False  # DICOM with BurnedInAnnotation=YES is quarantined unless the source opts in
    slice_axes: Annotated[tuple[str, ...], BeforeValidator(_slice_axes)] = ("axial",)  # volumes: axial, coronal, sagittal
    slice_every: Int(1, 10_000) = 1  # keep every Nth foreground slice
    min_slice_fraction: Fraction = 0.0  # drop a label's slice under this share of the label's largest slice
    label_windows: Annotated[tuple[tuple[str, str], ...], BeforeValidator(_label_windows)] = ()  # CT: label name -> window preset for slices showing it
    boxes: BoxSpec | None = None
    expert: Expert | None = None  # a model the rois stage runs, or a tool's output files (kind: precomputed)
    expert_labels: ExpertSpec | None = None  # a 3D expert labelling whole volumes (no stage runs it yet)
    proposals: Flag = False  # classical proposals for images with no annotation and no expert
    include_proposals: Flag = False  # proposals are kept out of the dataset unless this is set
    include_low_confidence: Flag = False  # expert ROIs under the expert's min_confidence are kept out of the dataset unless this is set
    orientation: Annotated[str | None, _one_of(ORIENTATIONS), TEXT] = None  # 2D sources oriented by convention
    volume_index: Annotated[str | int | None, BeforeValidator(_volume_index)] = None  # 4D volumes: first, middle, N (0-based) or all; unset rejects them
    midline_band: Annotated[float, BeforeValidator(_midline_band), _number(float, 0, None)] = 0.10  # share of the body's width around its centre called midline
    terms: Annotated[tuple[tuple[str, str], ...], BeforeValidator(_terms)] = ()  # source label -> canonical vocabulary term, stated by the source
    findings: Annotated[tuple[str, ...] | None, BeforeValidator(_findings)] = None  # the labels that are findings (the rest anatomy); None: as the vocabulary says
    mmr: Annotated[float | None, BeforeValidator(_mmr), _number(float, 0, None, optional=True)] = None  # maximal marginal relevance: 1.0 relevance ... 0.0 diversity
    vocabulary: Path | None = None  # the sources file's own vocabulary, extending the bundled one
    generator: GeneratorSpec = GeneratorSpec()
    quality: Annotated[str, BeforeValidator(_quality)] = "{}"  # JSON of the `quality:` mapping: severities, label ranges, description length bounds
    faithfulness: FaithfulnessConfig = FaithfulnessConfig()
    annotations: AnnotationsConfig = AnnotationsConfig()
    retry: RetryConfig = RetryConfig()  # the top-level `retry:` unless the source sets its own
    storage: StorageConfig | None = None  # the top-level `storage:` unless the source sets its own; None: the work folder
    drop: str = "base"  # the landing-zone drop whose folder `root` is (base: the source's own root)
    benchmark_hashes: Path | None = None  # images to exclude (benchmark test sets): one hash per line
    shard_size: Int(1, 1_000_000) = 1000  # items per shard; an item is never split across shards
    max_side: Int(16, 65_536) = 1024  # longest side of a normalized 2D image, in pixels
    negatives_per_volume: Int(0, 10_000) = 2  # slices without foreground kept per volume
    min_roi_pixels: Int(0) = 16  # smallest connected component kept as an ROI
    min_roi_fraction: Fraction = 0.0001  # ...and its smallest share of the image
    top_k: Int(1, 1000) = 3  # passages retrieved per image
    near_distance: Int(0, 64) = 6  # Hamming distance of 64-bit perceptual hashes that makes a near duplicate (0: exact only)
    max_quarantine_share: Fraction = 0.25  # above this share of quarantined items, `run` exits 1
    max_voxels: Int(1) = 1_000_000_000  # a volume, DICOM object or series declaring more (from its headers) is a decompression bomb
    min_score: Fraction = 0.55  # cosine score under which a retrieved passage is not cited (chosen on bench-retrieval)

    @field_validator("masks", mode="before")
    @classmethod
    def _masks_of_layout(cls, value, info: ValidationInfo):
        if not _from_file(info):
            return value
        if info.data.get("layout") != "image_masks":
            return ()  # read only for layout image_masks
        if not isinstance(value, list) or not value:
            _fail("must be a non-empty list for layout image_masks")
        return value

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map_of_layout(cls, value, info: ValidationInfo):
        return _label_pairs(value, names_allowed=info.data.get("layout") == "dicom") if _from_file(info) else value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo):
        if not _from_file(info):
            return self
        if self.layout == "image_masks" and not self.masks:
            _fail("must be a non-empty list for layout image_masks", at=("masks",))
        precomputed = self.precomputed_expert
        if precomputed is not None:
            _check_precomputed(self, precomputed)
        if self.layout == "volume_labels" and (self.labels is not None or precomputed is None):
            if self.labels is None:
                _fail("is required (or an `expert` of kind precomputed labels the volumes)", at=("labels",))
            try:
                _regex_problem(self.labels)
            except PydanticCustomError as exc:
                _fail(exc.context["message"], at=("labels",))
        if self.layout == "image_boxes" and self.boxes is None:
            _fail("layout image_boxes needs a `boxes` mapping", at=("boxes",), line_at=("layout",))
        if self.layout == "labeled_images" and not (self.label is not None or self.labels_csv or "(?P<label>" in self.images or precomputed):
            _fail("labeled_images needs a `label` group, a `label` key or `labels_csv`", at=("images",))
        self._check_fields()
        _check_inside(self.labels_csv.file if self.labels_csv else None, self.root, ("labels_csv", "file"))
        _check_inside(self.boxes.file if self.boxes else None, self.root, ("boxes", "file"))
        for key in ("file", "type_info"):
            _check_inside(getattr(precomputed, key, None), self.root, ("expert", key))
        return self

    @property
    def model_expert(self) -> ExpertSpec | None:
        """The model the rois stage runs, if the source's expert is one."""
        return self.expert if self.expert is not None and not self.expert.precomputed else None

    @property
    def precomputed_expert(self) -> PrecomputedExpert | None:
        """The tool output files the source's expert reads, if it is of kind precomputed."""
        return self.expert if self.expert is not None and self.expert.precomputed else None

    @property
    def min_confidence(self) -> float | None:
        return self.expert.min_confidence if self.expert is not None else None

    def _check_fields(self) -> None:
        """Every `{field}` a mask, labels or boxes pattern uses must be a named group of `images`."""
        groups = set(re.compile(self.images).groupindex)
        templates = [(self.labels, ("labels",))] + [(m.pattern, ("masks", i, "pattern")) for i, m in enumerate(self.masks)]
        if self.precomputed_expert is not None:
            templates.append((self.precomputed_expert.pattern, ("expert", "pattern")))
        if self.boxes is not None:
            templates.append((self.boxes.pattern, ("boxes", "pattern")))
        for value, at in templates:
            if value is None:
                continue
            try:
                fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
            except ValueError as exc:
                _fail(f"is not a valid template ({exc}); write a literal brace as {{{{ or }}}}", at=at)
            missing = sorted(f for f in fields if f not in groups)
            if missing:
                _fail(f"uses {{{missing[0]}}}, which is not a named group of `images` (named groups: {', '.join(sorted(groups)) or 'none'})", at=at)

    @property
    def min_faithfulness(self) -> float:
        return self.faithfulness.min_faithfulness

    @property
    def min_completeness(self) -> float:
        return self.faithfulness.min_completeness

    @property
    def min_mean_completeness(self) -> float:
        return self.faithfulness.min_mean_completeness

    @property
    def max_contradiction_rate(self) -> float:
        return self.faithfulness.max_contradiction_rate

    @property
    def slug(self) -> str:
        """Dagster names (groups, partition sets) allow only [A-Za-z0-9_]."""
        return self.name.replace("-", "_")

    def label_name(self, value: int) -> str:
        return dict(self.label_map).get(int(value), f"label {int(value)}")

    def rename(self, name: str) -> str:
        """A DICOM segment or ROI name through the label map (`{Liver: liver}`)."""
        return dict(self.label_map).get(name, name)

    def plain(self) -> dict:
        """Every field as JSON-able plain values (paths as strings, tuples as lists, sections as mappings)."""
        return self.model_dump(mode="json")


def _include(value, info: ValidationInfo):
    if not _from_file(info):
        return value
    value = value or []
    if not _string_list(value):
        _fail("must be a list of glob patterns")
    return tuple(value)


class KnowledgeConfig(Section):
    """One knowledge corpus (`knowledge:` is one of these or a list of them)."""

    name: Annotated[str, _matching(NAME_RE.pattern, "must be lower-case letters, digits and '-' (2-63 characters)"), TEXT]
    format: Annotated[str, _one_of(CORPUS_FORMATS), TEXT]
    root: Annotated[Path, _under_base("dir"), TEXT]
    license: RequiredText
    citation: Text = None
    include: Annotated[tuple[str, ...], BeforeValidator(_include)] = ()


class RetrievalConfig(Section):
    """How corpora are embedded and where the knowledge base lives (the sources file's `retrieval:`)."""

    model_dir: Annotated[Path | None, _under_base("dir"), TEXT] = None  # a sentence-transformers folder; None: the bundled all-MiniLM-L6-v2
    query_prefix: Text = ""  # prepended to every query (E5: "query: ", BGE: "Represent this sentence ...")
    passage_prefix: Text = ""  # prepended to every passage (E5: "passage: ")
    max_tokens: Int(8) = 160  # longest passage, in the embedder's tokens
    overlap_tokens: Int(0) = 32  # whole sentences repeated from the end of the passage before, at most this many tokens
    server: Annotated[str | None, _matching(r"https?://[^/:]+(:\d+)?/?", "must be http(s)://host[:port]"), TEXT] = None  # a Chroma server; None: embedded
    token_env: Annotated[str | None, _matching(ENV_NAME, "must name an environment variable (the token itself never goes in the file)"), TEXT] = None
    collection: Annotated[str, _matching(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]",
                                         "must be 3-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit"), TEXT] = "medtrinity-knowledge"
    rerun_contexts: Flag = False  # automation re-runs every context built on an older knowledge base when it changes

    @model_validator(mode="after")
    def _overlap_under_half(self, info: ValidationInfo):
        if _from_file(info) and self.overlap_tokens >= self.max_tokens // 2:
            _fail(f"must be under half of max_tokens ({self.max_tokens // 2})", at=("overlap_tokens",))
        return self


class Decontamination(Section):
    """`decontamination: {hashes: file}`: images of benchmark test sets, excluded from every source."""

    hashes: Annotated[Path, _under_base("file"), TEXT]


def _partial(model: type[Section], keys: tuple[str, ...], name: str, doc: str) -> type[Section]:
    """A section holding some of `model`'s fields, each unset (None) unless the file sets it: the types,
    bounds and checks are the model's own, its defaults stay stated once, there."""
    def typed(field):
        return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation

    fields = {k: (typed(model.model_fields[k]), None) for k in keys}
    return create_model(name, __base__=Section, __doc__=doc, **fields)


DefaultsConfig = _partial(SourceConfig, (*DEFAULTABLE, "faithfulness"), "DefaultsConfig",
                          "The `defaults:` section: per-source numbers (and `faithfulness:` settings) every source gets unless it sets its own.")


def _version(value, info: ValidationInfo):
    if _from_file(info) and not (_whole(value) and value == 1):
        _fail("must be 1")
    return value


def _entries(value, info: ValidationInfo):
    if _from_file(info) and (not isinstance(value, list) or not value):
        _fail("must be a non-empty list")
    return value


class Document(Section):
    """The file's top level as written; `parse_sources` then validates each source (with the defaults
    and the top-level generator, retry and storage merged in) and each corpus."""

    version: Annotated[int, BeforeValidator(_version)]
    defaults: DefaultsConfig = DefaultsConfig()
    sources: Annotated[tuple[Any, ...], BeforeValidator(_entries)]
    vocabulary: Annotated[Path | None, _under_base("file"), TEXT] = None  # checked as a vocabulary by medtrinity_core.knowledge.config
    generator: GeneratorSpec = GeneratorSpec()
    retry: RetryConfig = RetryConfig()
    storage: StorageConfig | None = None
    decontamination: Decontamination | None = None
    knowledge: Any = None  # one corpus (a mapping) or a list of them
    retrieval: RetrievalConfig = RetrievalConfig()

    @classmethod
    def _from_yaml(cls, data: dict, info: ValidationInfo) -> dict:
        if "version" not in data:
            _fail("must be 1", at=("version",))
        if "sources" not in data:
            _fail("must be a non-empty list", at=("sources",))
        return data


# --- lines -------------------------------------------------------------------------------------------

def _steps(loc) -> tuple:
    """A key path (`sources[0].masks[1].pattern`) as steps; a tuple is taken as it is."""
    if isinstance(loc, tuple):
        return loc
    return tuple(int(index) if index else key for index, key in re.findall(r"\[(\d+)\]|([^.\[\]]+)", loc))


def _child(node, step):
    """The key of `node` that `step` names (a label map's key 1 may come as '1'), or None."""
    if isinstance(node, dict):
        for key in (step, str(step)) if not isinstance(step, str) else (step, int(step) if re.fullmatch(r"-?\d+", step) else step):
            if key in node:
                return key
    return None


class Locator:
    """The lines of one sources file's keys: `locate(loc, *fallbacks)` is the line of the first key path
    the file has (else the line of the mapping the last one would be in), `locate.key(loc)` the path as an
    error names it, `locate.error(loc, message)` the `SourcesFileError`. Every Locator equals every other:
    it is where the values came from, not part of the configuration."""

    def __init__(self, file: str, doc):
        self.file, self.doc = file, doc

    def __eq__(self, other) -> bool:
        return isinstance(other, Locator)

    def __hash__(self) -> int:
        return 0

    def _walk(self, loc) -> tuple[int | None, bool]:
        node, line = self.doc, getattr(self.doc, "line", None)
        for step in _steps(loc):
            if isinstance(node, list) and isinstance(step, int):
                if not 0 <= step < len(node):
                    return line, False
                node = node[step]
                continue
            key = _child(node, step)
            if key is None:
                return (node.line if isinstance(node, LineDict) else line), False
            line, node = node.line_of(key), node[key]
        return line, True

    def __call__(self, loc, *fallbacks) -> int | None:
        candidates = (loc, *fallbacks)
        for candidate in candidates:
            line, found = self._walk(candidate)
            if found:
                return line
        return self._walk(candidates[-1])[0]

    def key(self, loc) -> str:
        node, out = self.doc, ""
        for step in _steps(loc):
            if isinstance(node, list) or (node is None and isinstance(step, int)):
                out += f"[{step}]"
                node = node[step] if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node) else None
            else:
                out += f".{step}" if out else str(step)
                key = _child(node, step)
                node = node[key] if key is not None else None
        return out

    def error(self, loc, message: str, *line_at) -> SourcesFileError:
        """The error at `loc`, naming the line of `loc` (or of the first of `line_at` the file has)."""
        return SourcesFileError(self.file, self(*line_at) if line_at else self(loc), self.key(loc), message)

    def warn(self, loc, message: str, category: type[Warning] = UserWarning) -> None:
        line = self(loc)
        warnings.warn(f"{self.file}:{line}: {self.key(loc)}: {message}" if line else f"{self.file}: {self.key(loc)}: {message}", category, stacklevel=4)


class SourcesFile(Section):
    """A validated sources file. `locate` maps its key paths to lines (for the stages' validators)."""

    path: Path
    sources: tuple[SourceConfig, ...]
    corpora: tuple[KnowledgeConfig, ...] = ()  # the knowledge corpora, embedded into one knowledge base
    defaults: dict = Field(default_factory=dict)  # the per-source numbers and faithfulness settings a source gets unless it sets its own
    generator: GeneratorSpec = GeneratorSpec()  # the top-level default
    retrieval: RetrievalConfig = RetrievalConfig()
    vocabulary: Path | None = None
    retry: RetryConfig = RetryConfig()  # the top-level default
    storage: StorageConfig | None = None  # the top-level default
    _locate: Locator | None = PrivateAttr(default=None)

    @property
    def locate(self) -> Locator:
        return self._locate or Locator(str(self.path), None)

    def source(self, name: str) -> SourceConfig:
        for src in self.sources:
            if src.name == name:
                return src
        raise KeyError(name)


# --- parsing -----------------------------------------------------------------------------------------

# Settings accepted and validated that no stage reads yet: a file setting one (to other than its default)
# is warned about. Paths under a source, under `defaults:`, and at the top level.
NOT_ACTED_ON = {
    "source": (("faithfulness", "judge"), ("faithfulness", "regenerate"), ("expert_labels",),
               ("annotations", "exhaustive_findings"), ("retry", "max_attempts"), ("storage",)),
    "defaults": (("faithfulness", "judge"), ("faithfulness", "regenerate")),
    "top": (("retry", "max_attempts"), ("storage",)),
}


def _default_at(model: type[BaseModel], path: tuple[str, ...]):
    field = model.model_fields[path[0]]
    return field.default if len(path) == 1 else _default_at(type(field.default), path[1:])


def _read_document(path: Path) -> LineDict:
    """The file's YAML as LineDicts; every refusal a `SourcesFileError` naming its line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourcesFileError(str(path), None, "file", f"cannot be read ({exc.strerror or exc})") from None
    text = decode_sources_text(str(path), data)
    try:
        doc = load_with_lines(text)
    except DuplicateKey as exc:
        raise SourcesFileError(str(path), exc.line, exc.key, str(exc)) from None
    except YamlRefused as exc:
        raise SourcesFileError(str(path), exc.line, "yaml", str(exc)) from None
    except RecursionError:
        raise SourcesFileError(str(path), None, "yaml", "nested too deeply to read (more than about 500 levels)") from None
    except Exception as exc:  # noqa: BLE001 - yaml errors carry their own mark
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        raise SourcesFileError(str(path), mark.line + 1 if mark else None, "yaml", str(getattr(exc, "problem", None) or exc)) from None
    if not isinstance(doc, LineDict):
        raise SourcesFileError(str(path), None, "file", "must be a mapping with `version` and `sources`")
    return doc


class _Parser:
    """Validates sections of one file, turning the first pydantic error into `file:line: key: message`."""

    def __init__(self, locate: Locator, base: Path):
        self.locate, self.context = locate, {"base": base, "file": locate.file}

    def validate(self, model: type[Section], data, loc: tuple):
        try:
            return model.model_validate(data, context=self.context)
        except ValidationError as exc:
            raise self.error(exc.errors(include_url=False)[0], loc) from None

    def error(self, error: dict, loc: tuple) -> SourcesFileError:
        where = loc + tuple(step for step in error["loc"] if step not in UNION_TAGS)
        ctx = error.get("ctx") or {}
        if error["type"] == "sources":
            line_at = (where + tuple(ctx["line_at"]),) if ctx.get("line_at") is not None else ()
            return self.locate.error(where + tuple(ctx.get("at", ())), ctx["message"], *line_at)
        messages = {"missing": "is required", "model_type": "must be a mapping", "dict_type": "must be a mapping", "model_attributes_type": "must be a mapping",
                    "extra_forbidden": "unknown key"}
        return self.locate.error(where, messages.get(error["type"], error["msg"]))

    def relocate(self, node, loc: tuple):
        """The faithfulness settings at their old place (a source's or `defaults:` top level) moved under
        `faithfulness:`, each checked where it is written and warned about as deprecated."""
        if not isinstance(node, dict) or not any(k in node for k in FAITHFULNESS_MOVED):
            return node
        section = node.get("faithfulness") or {}
        if not isinstance(section, dict):
            raise self.locate.error(loc + ("faithfulness",), "must be a mapping")
        moved, where = dict(section), self.locate.key(loc)
        for key in (k for k in FAITHFULNESS_MOVED if k in node):
            self.validate(FaithfulnessConfig, {key: node[key]}, loc)
            if key in section:
                raise self.locate.error(loc + (key,), f"is also set as {where}.faithfulness.{key}; keep only that one")
            self.locate.warn(loc + (key,), f"is deprecated here; write it as {where}.faithfulness.{key}", FutureWarning)  # a deprecation shown to users
            moved[key] = node[key]
        return {k: v for k, v in node.items() if k not in FAITHFULNESS_MOVED} | {"faithfulness": moved}

    def warn_not_acted_on(self) -> None:
        doc = self.locate.doc
        places = [((), "top"), (("defaults",), "defaults")] + [(("sources", i), "source") for i in range(len(doc.get("sources") or ()))]
        models = {"top": Document, "defaults": SourceConfig, "source": SourceConfig}
        for loc, kind in places:
            for path in NOT_ACTED_ON[kind]:
                value, found = self.raw(loc + path)
                if found and value != _default_at(models[kind], path):
                    self.locate.warn(loc + path, "accepted, but no stage acts on it yet")
            if kind != "top":
                for path in (("faithfulness", "min_mean_faithfulness"), ("min_mean_faithfulness",)):
                    if self.raw(loc + path)[0] is not None:
                        self.locate.warn(loc + path, "is deprecated and no longer checked: the partition check gates faithfulness.min_mean_completeness "
                                                     "(and max_contradiction_rate) instead", FutureWarning)

    def raw(self, loc: tuple):
        node = self.locate.doc
        for step in loc:
            if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
                node = node[step]
            elif isinstance(node, dict) and step in node:
                node = node[step]
            else:
                return None, False
        return node, True


def _merged(node, defaults: dict, generator: dict):
    """A source's mapping with the `defaults:` it does not override merged under it, and the top-level
    generator's keys under its own `generator:` (a source's value always wins)."""
    if not isinstance(node, dict):
        return node
    node = dict(node)
    for key, value in defaults.items():
        if key == "faithfulness" and isinstance(node.get(key), dict):
            node[key] = {**value, **node[key]}
        else:
            node.setdefault(key, value)
    if isinstance(node.get("generator"), dict):
        node["generator"] = {**generator, **node["generator"]}
    return node


def _resolved_defaults(defaults: BaseModel) -> dict:
    """`SourcesFile.defaults`: every defaultable number and the faithfulness settings, the file's or the model's."""
    out = {k: getattr(defaults, k) if k in defaults.model_fields_set else SourceConfig.model_fields[k].default for k in DEFAULTABLE}
    out["faithfulness"] = (defaults.faithfulness or FaithfulnessConfig()).model_dump(mode="json")
    return out


# Sections that, written in the file, must be mappings: `expert:` left empty is an error, never "no expert"
# (as `decontamination:` left empty must not switch the benchmark exclusion off).
MAPPING_SECTIONS = {"top": ("defaults", "retrieval", "generator", "decontamination", "retry", "storage"),
                    "source": ("expert", "expert_labels", "boxes", "labels_csv", "generator", "faithfulness", "annotations", "retry", "storage")}


def _no_empty_sections(parser, doc: dict) -> None:
    for key in MAPPING_SECTIONS["top"]:
        if key in doc and doc[key] is None:
            raise parser.locate.error((key,), "must be a mapping")
    if "vocabulary" in doc and doc["vocabulary"] is None:
        raise parser.locate.error(("vocabulary",), "is required")
    for i, entry in enumerate(doc.get("sources") or () if isinstance(doc.get("sources"), list) else ()):
        for key in MAPPING_SECTIONS["source"]:
            if isinstance(entry, dict) and key in entry and entry[key] is None:
                raise parser.locate.error(("sources", i, key), "must be a mapping")


def parse_sources(path: str | Path) -> SourcesFile:
    """Read a sources file and validate its structure (no stage's knowledge); raises `SourcesFileError`
    on the first problem. `medtrinity_core.config.load_sources` adds the stages' checks."""
    path = Path(path)
    doc = _read_document(path)
    parser = _Parser(Locator(str(path), doc), path.resolve().parent)
    _no_empty_sections(parser, doc)
    top = parser.validate(Document, {**doc, "defaults": parser.relocate(doc["defaults"], ("defaults",))} if "defaults" in doc else dict(doc), ())
    defaults, generator = top.defaults.model_dump(exclude_unset=True), top.generator.model_dump(exclude_unset=True)
    hashes = top.decontamination.hashes if top.decontamination else None
    sources, seen = [], set()
    for i, entry in enumerate(top.sources):
        node = _merged(parser.relocate(entry, ("sources", i)), defaults, generator)
        src = parser.validate(SourceConfig, node, ("sources", i))
        inherited = {key: getattr(top, key) for key in ("generator", "retry", "storage") if key not in node}
        src = src.model_copy(update={"vocabulary": top.vocabulary, "benchmark_hashes": hashes, **inherited})
        if src.name in seen:
            raise parser.locate.error(("sources", i, "name"), f"duplicate source name '{src.name}'")
        seen.add(src.name)
        sources.append(src)
    corpora, names = [], set()
    entries = top.knowledge if isinstance(top.knowledge, list) else [top.knowledge] if "knowledge" in doc else []
    for i, entry in enumerate(entries):
        loc = ("knowledge", i) if isinstance(top.knowledge, list) else ("knowledge",)
        corpus = parser.validate(KnowledgeConfig, entry, loc)
        if corpus.name in names:
            raise parser.locate.error(loc + ("name",), f"duplicate corpus name '{corpus.name}'")
        names.add(corpus.name)
        corpora.append(corpus)
    parsed = SourcesFile(path=path.resolve(), sources=tuple(sources), corpora=tuple(corpora), defaults=_resolved_defaults(top.defaults), generator=top.generator,
                         retrieval=top.retrieval, vocabulary=top.vocabulary, retry=top.retry, storage=top.storage)
    parsed._locate = parser.locate
    parser.warn_not_acted_on()
    return parsed
