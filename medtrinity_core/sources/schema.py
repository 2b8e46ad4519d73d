"""The sources file: typed configuration, validated with errors that name the file, line and key."""

from __future__ import annotations

import hashlib
import json
import math
import re
import string
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from medtrinity_core.errors import SourcesFileError
from medtrinity_core.imaging.intensity import CT_WINDOWS
from medtrinity_core.knowledge.vocabulary import load_vocabulary
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
EXPERT_KINDS = ("torchscript", "state_dict", "bundle")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
LICENSE_RE = re.compile(r"^(LicenseRef-[A-Za-z0-9.\-]+|[A-Za-z0-9][A-Za-z0-9.\-+]*)$")

DEFAULTS = {
    "shard_size": 1000,  # items per shard; an item is never split across shards
    "max_side": 1024,  # longest side of a normalized 2D image, in pixels
    "negatives_per_volume": 2,  # slices without foreground kept per volume
    "min_roi_pixels": 16,  # smallest connected component kept as an ROI
    "min_roi_fraction": 0.0001,  # ...and its smallest share of the image
    "top_k": 3,  # passages retrieved per image
    "near_distance": 6,  # Hamming distance of 64-bit perceptual hashes that makes a near duplicate (0: exact only)
    "max_quarantine_share": 0.25,  # above this share of quarantined items, `run` exits 1
    "max_voxels": 1_000_000_000,  # a volume, DICOM object or series declaring more (from its headers) is a decompression bomb
    "min_score": 0.55,  # cosine score under which a retrieved passage is not cited (chosen on bench-retrieval)
    "min_faithfulness": 0.8,  # a description scoring under this stays in its manifest and is excluded from triplets
    "min_mean_faithfulness": 0.9,  # the descriptions check fails a partition whose mean score is under this
    "max_contradiction_rate": 0.05,  # ...or whose share of descriptions with a contradiction is over this
}
SOURCE_KEYS = {
    "name", "modality", "body_region", "license", "license_note", "citation", "root", "layout",
    "images", "masks", "labels", "label_map", "label", "labels_csv", "window",
    "paths_identify_patients", "allow_burned_in", "slice_axes", "slice_every", "min_slice_fraction", "label_windows", "boxes", "expert", "proposals", "include_proposals",
    "orientation", "volume_index", "midline_band", "terms", "findings", "mmr", "generator", "quality", *DEFAULTS,
}
BOX_KEYS = {"format", "file", "pattern", "classes", "image_column", "label_column", "box_columns", "box_format"}
EXPERT_KEYS = {"kind", "path", "network", "labels", "roi_size", "sw_batch_size", "overlap", "batch_size", "in_channels", "device", "trust_code"}
# Networks a state dict may be loaded into: plain constructors of monai.networks.nets with plain arguments.
ALLOWED_NETWORKS = ("UNet", "BasicUNet", "AttentionUnet", "SegResNet", "DynUNet", "UNETR", "SwinUNETR")
CODE_KINDS = ("torchscript", "bundle")  # TorchScript is code; a bundle's config evaluates expressions
MASK_KEYS = {"pattern", "label", "label_words", "threshold", "instances", "label_map"}
KNOWLEDGE_KEYS = {"name", "format", "root", "license", "citation", "include"}
RETRIEVAL_KEYS = {"model_dir", "query_prefix", "passage_prefix", "max_tokens", "overlap_tokens", "server", "token_env", "collection", "rerun_contexts"}
TOP_KEYS = {"version", "defaults", "sources", "knowledge", "retrieval", "vocabulary", "generator", "decontamination"}
BACKENDS = ("grounded", "transformers", "openai")
GENERATOR_KEYS = {"backend", "model", "url", "api_key_env", "prompt", "max_new_tokens", "temperature", "concurrency", "timeout_s", "retries",
                  "backoff_s", "batch_size", "device", "dtype"}
ORIENTATIONS = ("radiological_axial", "radiological_coronal", "chest_pa")
VOLUME_INDEX = ("first", "middle", "all")
POSITIVE = {"shard_size": 1, "max_side": 16, "top_k": 1, "max_voxels": 1}  # keys whose zero would mean nothing at all
# Upper bounds: shares and scores are fractions; generator settings within what a server could mean (a
# retry count of 10^8 would retry for years).
MAXIMUM = {"max_quarantine_share": 1.0, "min_faithfulness": 1.0, "min_mean_faithfulness": 1.0, "max_contradiction_rate": 1.0, "min_score": 1.0,
           "min_roi_fraction": 1.0, "min_slice_fraction": 1.0, "overlap": 0.99, "top_k": 1000, "shard_size": 1_000_000, "max_side": 65_536,
           "retries": 20, "timeout_s": 3600.0, "backoff_s": 60.0, "concurrency": 1024, "max_new_tokens": 32_768, "temperature": 2.0,
           "batch_size": 4096, "sw_batch_size": 4096, "in_channels": 64, "slice_every": 10_000, "negatives_per_volume": 10_000, "near_distance": 64}
REQUIRED = ("name", "modality", "license", "root", "layout", "images")


@dataclass(frozen=True)
class MaskSpec:
    pattern: str
    label: str | None = None
    label_words: tuple[tuple[str, str], ...] = ()
    threshold: int | None = None  # None: any non-zero pixel (lossless masks); JPEG masks default to 128
    instances: str | None = None  # "per_file": each mask file is one instance
    label_map: tuple[tuple[int, str], ...] = ()  # a label PNG: pixel value -> label name


@dataclass(frozen=True)
class LabelsCsv:
    file: str
    image_column: str
    label_column: str


@dataclass(frozen=True)
class BoxSpec:
    """Ground-truth boxes: a COCO JSON file, YOLO text files (one per image), or a CSV table."""

    format: str
    file: str | None = None  # coco, csv
    pattern: str | None = None  # yolo: template of the label file, e.g. 'labels/{id}\\.txt'
    classes: tuple[str, ...] = ()  # yolo: class index -> label
    image_column: str = "image"
    label_column: str = "label"
    box_columns: tuple[str, ...] = ("x0", "y0", "x1", "y1")
    box_format: str = "xyxy"  # csv: xyxy or xywh (pixels)


@dataclass(frozen=True)
class ExpertSpec:
    """A segmentation model run through MONAI's sliding-window inference."""

    kind: str  # torchscript | state_dict | bundle
    path: Path
    labels: tuple[tuple[int, str], ...]
    network: str | None = None  # state_dict: a class in monai.networks.nets
    network_args: str = "{}"  # JSON of its keyword arguments
    roi_size: tuple[int, int] = (96, 96)
    sw_batch_size: int = 4
    overlap: float = 0.25
    batch_size: int = 8
    in_channels: int = 1
    device: str = "auto"  # auto: CUDA when present
    trust_code: bool = False  # torchscript and bundle run code from the model files: the source must opt in


@dataclass(frozen=True)
class GeneratorSpec:
    """Which backend writes the descriptions (the sources file's `generator:`, per source or top level)."""

    backend: str = "grounded"
    model: str | None = None  # transformers: a local model folder; openai: the model name the server serves
    url: str | None = None  # openai: the server's base URL, e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = None  # openai: the environment variable holding the key
    prompt: str = "describe-v1"  # a prompt template bundled in medtrinity_core/describe/prompts, or a path to one
    max_new_tokens: int = 384
    temperature: float = 0.0  # 0: greedy
    concurrency: int = 4  # openai: requests in flight
    timeout_s: float = 60.0  # openai: per request
    retries: int = 4  # openai: on 429, 5xx, timeouts and malformed answers
    backoff_s: float = 0.5  # openai: first back-off; doubled each retry, with jitter
    batch_size: int = 4  # transformers: images per forward pass
    device: str = "auto"  # transformers: auto (CUDA when present), cpu, cuda, cuda:N
    dtype: str = "auto"  # transformers: auto (bf16 on CUDA, fp32 on CPU), bfloat16, float16, float32


@dataclass(frozen=True)
class SourceConfig:
    name: str
    modality: str
    license: str
    root: Path
    layout: str
    images: str
    body_region: str | None = None
    license_note: str | None = None
    citation: str | None = None
    masks: tuple[MaskSpec, ...] = ()
    labels: str | None = None
    label_map: tuple[tuple[int | str, str], ...] = ()  # value -> name (label volumes), or name -> name (DICOM segments)
    label: str | None = None
    labels_csv: LabelsCsv | None = None
    window: str | None = None
    paths_identify_patients: bool = False
    allow_burned_in: bool = False  # DICOM with BurnedInAnnotation=YES is quarantined unless the source opts in
    slice_axes: tuple[str, ...] = ("axial",)  # volumes: axial, coronal, sagittal
    slice_every: int = 1  # keep every Nth foreground slice
    min_slice_fraction: float = 0.0  # drop a label's slice under this share of the label's largest slice
    label_windows: tuple[tuple[str, str], ...] = ()  # CT: label name -> window preset for slices showing it
    boxes: BoxSpec | None = None
    expert: ExpertSpec | None = None
    proposals: bool = False  # classical proposals for images with no annotation and no expert
    include_proposals: bool = False  # proposals are kept out of the dataset unless this is set
    orientation: str | None = None  # 2D sources oriented by convention: radiological_axial, radiological_coronal, chest_pa
    volume_index: str | int | None = None  # 4D volumes: first, middle, N (0-based) or all; unset rejects them
    midline_band: float = 0.10  # share of the body's width (height) around its centre called midline (central)
    terms: tuple[tuple[str, str], ...] = ()  # source label -> canonical vocabulary term, stated by the source
    findings: tuple[str, ...] | None = None  # the labels that are findings (the rest anatomy); None: as the vocabulary says
    mmr: float | None = None  # maximal marginal relevance: 1.0 relevance only ... 0.0 diversity only; None: off
    vocabulary: Path | None = None  # the sources file's own vocabulary, extending the bundled one
    generator: GeneratorSpec = GeneratorSpec()
    quality: str = "{}"  # JSON of the `quality:` mapping: severities, label ranges, description length bounds
    drop: str = "base"  # the landing-zone drop whose folder `root` is (base: the source's own root)
    benchmark_hashes: Path | None = None  # images to exclude (benchmark test sets): one hash per line
    shard_size: int = DEFAULTS["shard_size"]
    max_side: int = DEFAULTS["max_side"]
    negatives_per_volume: int = DEFAULTS["negatives_per_volume"]
    min_roi_pixels: int = DEFAULTS["min_roi_pixels"]
    min_roi_fraction: float = DEFAULTS["min_roi_fraction"]
    top_k: int = DEFAULTS["top_k"]
    near_distance: int = DEFAULTS["near_distance"]
    max_quarantine_share: float = DEFAULTS["max_quarantine_share"]
    max_voxels: int = DEFAULTS["max_voxels"]
    min_score: float = DEFAULTS["min_score"]
    min_faithfulness: float = DEFAULTS["min_faithfulness"]
    min_mean_faithfulness: float = DEFAULTS["min_mean_faithfulness"]
    max_contradiction_rate: float = DEFAULTS["max_contradiction_rate"]

    @property
    def slug(self) -> str:
        """Dagster names (groups, partition sets) allow only [A-Za-z0-9_]."""
        return self.name.replace("-", "_")

    def label_name(self, value: int) -> str:
        return dict(self.label_map).get(int(value), f"label {int(value)}")

    def rename(self, name: str) -> str:
        """A DICOM segment or ROI name through the label map (`{Liver: liver}`)."""
        return dict(self.label_map).get(name, name)

    def fingerprint(self, stage: str | None = None) -> str:
        """A hash of the configuration a stage reads (and, through its upstream stage, all it depends
        on), plus the package version: the stage asset's code version. Without a stage, all of it."""
        from medtrinity_core import __version__

        data = asdict(self)
        if stage is not None:
            data = {k: v for k, v in data.items() if k in STAGE_KEYS[stage]}
            data["upstream"] = self.fingerprint(STAGES_BEFORE[stage]) if STAGES_BEFORE[stage] else ""
        data["package"] = __version__
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# The keys each stage reads beyond what its upstream stage read (its code version hashes these and the
# upstream stage's version): a new generator marks descriptions and triplets stale, not normalized.
STAGE_KEYS = {
    "raw": {"name", "root", "layout", "images", "masks", "labels", "label_map", "label", "labels_csv", "boxes", "paths_identify_patients",
            "shard_size", "max_voxels", "volume_index"},
    "normalized": {"modality", "window", "allow_burned_in", "slice_axes", "slice_every", "min_slice_fraction", "label_windows", "max_side",
                   "negatives_per_volume", "near_distance", "benchmark_hashes"},
    "rois": {"min_roi_pixels", "min_roi_fraction", "expert", "proposals", "orientation", "midline_band"},
    "context": {"body_region", "top_k", "min_score", "mmr", "terms", "findings", "vocabulary", "include_proposals"},
    "descriptions": {"generator", "min_faithfulness", "min_mean_faithfulness", "max_contradiction_rate"},
    "triplets": {"license", "license_note", "citation"},
}
STAGES_BEFORE = {"raw": None, "normalized": "raw", "rois": "normalized", "context": "rois", "descriptions": "context", "triplets": "descriptions"}


@dataclass(frozen=True)
class KnowledgeConfig:
    name: str
    format: str
    root: Path
    license: str
    citation: str | None = None
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetrievalConfig:
    """How corpora are embedded and where the knowledge base lives (the sources file's `retrieval:`)."""

    model_dir: Path | None = None  # a sentence-transformers folder; None: the bundled all-MiniLM-L6-v2
    query_prefix: str = ""  # prepended to every query (E5: "query: ", BGE: "Represent this sentence ...")
    passage_prefix: str = ""  # prepended to every passage (E5: "passage: ")
    max_tokens: int = 160  # longest passage, in the embedder's tokens
    overlap_tokens: int = 32  # whole sentences repeated from the end of the passage before, at most this many tokens
    server: str | None = None  # http(s)://host:port of a Chroma server; None: embedded Chroma in the work folder
    token_env: str | None = None  # environment variable holding the server's bearer token
    collection: str = "medtrinity-knowledge"
    rerun_contexts: bool = False  # automation re-runs every context built on an older knowledge base when it changes


@dataclass(frozen=True)
class SourcesFile:
    path: Path
    sources: tuple[SourceConfig, ...]
    corpora: tuple[KnowledgeConfig, ...] = ()  # the knowledge corpora, embedded into one knowledge base
    defaults: dict = field(default_factory=dict)
    generator: GeneratorSpec = GeneratorSpec()  # the top-level default
    retrieval: RetrievalConfig = RetrievalConfig()
    vocabulary: Path | None = None

    def source(self, name: str) -> SourceConfig:
        for src in self.sources:
            if src.name == name:
                return src
        raise KeyError(name)


class _Checker:
    """Collects the context (file, key path) so every error reads `file:line: key: what is wrong`."""

    def __init__(self, file: Path):
        self.file = str(file)

    def fail(self, node: LineDict | None, key: str, path: str, message: str) -> None:
        line = node.line_of(key) if isinstance(node, LineDict) else None
        raise SourcesFileError(self.file, line, path, message)

    def mapping(self, value, parent, key, path) -> LineDict:
        if not isinstance(value, LineDict):
            self.fail(parent, key, path, "must be a mapping")
        return value

    def unknown_keys(self, node: LineDict, allowed: set, path: str) -> None:
        for key in node:
            if key not in allowed:
                self.fail(node, key, f"{path}.{key}" if path else str(key), f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, node: LineDict, key: str, path: str, required: bool = False) -> str | None:
        if key not in node or node[key] is None:
            if required:
                self.fail(node, key, path, "is required")
            return None
        value = node[key]
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.fail(node, key, path, "must be a string")
        return str(value)

    def choice(self, node: LineDict, key: str, path: str, options, required: bool = False) -> str | None:
        value = self.string(node, key, path, required)
        if value is not None and value not in options:
            self.fail(node, key, path, f"'{value}' is not one of {', '.join(options)}")
        return value

    def integer(self, node: LineDict, key: str, path: str, default, minimum: float = 0, kind=int, maximum: float | None = None):
        """A number: whole for `kind` int, finite always (`.nan` compares false with every threshold and
        `.inf` passes every one), from `minimum` to `maximum` (default: MAXIMUM's bound for the key)."""
        if key not in node:
            return default
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            self.fail(node, key, path, f"must be a {'whole ' if kind is int else ''}number, not {_shown(value)}")
        if not math.isfinite(value):
            self.fail(node, key, path, f"must be a finite number, not {value}")
        maximum = MAXIMUM.get(key) if maximum is None else maximum
        if value < minimum:
            self.fail(node, key, path, f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            self.fail(node, key, path, f"must be at most {maximum}")
        return kind(value)

    def regex(self, node: LineDict, key: str, path: str, required: bool = False) -> str | None:
        value = self.string(node, key, path, required)
        if value is not None:
            try:
                re.compile(value.replace("{{", "{").replace("}}", "}") if "{" in value else value)
            except re.error as exc:
                self.fail(node, key, path, f"is not a valid regular expression ({exc})")
            problem = backtracking_problem(value)
            if problem:
                self.fail(node, key, path, f"is refused: {problem}")
        return value

    def boolean(self, node: LineDict, key: str, path: str, default: bool = False) -> bool:
        """YAML's bare `true` or `false` only: a quoted 'false', `no`, `0` or `[false]` is an error, never
        read as true."""
        if key not in node:
            return default
        value = node[key]
        if not isinstance(value, bool):
            hint = " (YAML 1.1's yes/no/on/off are not booleans here)" if isinstance(value, str) and value.lower() in ("yes", "no", "on", "off", "y", "n") else ""
            self.fail(node, key, path, f"must be true or false (unquoted), not {_shown(value)}{hint}")
        return value


def _whole(value) -> bool:
    """A whole number, and not a boolean (YAML's `true` is Python's 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _string_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _shown(value) -> str:
    """A value as the error names it: its YAML type and a short repr."""
    kind = {str: "the string", int: "the number", float: "the number", list: "a list", LineDict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)
    text = repr(value) if not isinstance(value, (list, dict)) else repr(value)[:40]
    return f"{kind} {text}" if value is not None else kind


def _resolve_root(chk: _Checker, node: LineDict, key: str, path: str, base: Path) -> Path:
    raw = chk.string(node, key, path, required=True)
    root = (base / raw).resolve()
    if not root.is_dir():
        chk.fail(node, key, path, f"folder {root} does not exist")
    return root


def _parse_masks(chk: _Checker, node: LineDict, path: str) -> tuple[MaskSpec, ...]:
    masks = node.get("masks")
    if not isinstance(masks, list) or not masks:
        chk.fail(node, "masks", f"{path}.masks", "must be a non-empty list for layout image_masks")
    specs = []
    for i, entry in enumerate(masks):
        mpath = f"{path}.masks[{i}]"
        entry = chk.mapping(entry, node, "masks", mpath)
        chk.unknown_keys(entry, MASK_KEYS, mpath)
        pattern = chk.regex(entry, "pattern", f"{mpath}.pattern", required=True)
        label = chk.string(entry, "label", f"{mpath}.label")
        values = _parse_label_map(chk, entry, mpath)
        if label is None and not values and "(?P<label>" not in pattern:
            chk.fail(entry, "pattern", f"{mpath}.pattern", "needs a named group `label`, a fixed `label` key or a `label_map`")
        words = entry.get("label_words") or {}
        if not isinstance(words, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in words.items()):
            chk.fail(entry, "label_words", f"{mpath}.label_words", "must map characters to replacements (strings)")
        threshold = entry.get("threshold")
        if threshold is not None and (not _whole(threshold) or not 0 <= threshold < 256):
            chk.fail(entry, "threshold", f"{mpath}.threshold", "must be a whole number from 0 to 255")
        instances = chk.string(entry, "instances", f"{mpath}.instances")
        if instances not in (None, "per_file"):
            chk.fail(entry, "instances", f"{mpath}.instances", "must be per_file")
        specs.append(MaskSpec(pattern, label, tuple((str(k), str(v)) for k, v in words.items()), threshold, instances, values))
    return tuple(specs)


def _parse_boxes(chk: _Checker, node: LineDict, path: str) -> BoxSpec:
    bnode = chk.mapping(node.get("boxes"), node, "boxes", f"{path}.boxes")
    chk.unknown_keys(bnode, BOX_KEYS, f"{path}.boxes")
    fmt = chk.choice(bnode, "format", f"{path}.boxes.format", BOX_FORMATS, required=True)
    if fmt in ("coco", "csv"):
        chk.string(bnode, "file", f"{path}.boxes.file", required=True)
    if fmt == "yolo":
        chk.regex(bnode, "pattern", f"{path}.boxes.pattern", required=True)
        if not bnode.get("classes"):
            chk.fail(bnode, "classes", f"{path}.boxes.classes", "yolo boxes need the list of class names")
    if "classes" in bnode and (not _string_list(bnode["classes"]) or not all(c.strip() for c in bnode["classes"])):
        chk.fail(bnode, "classes", f"{path}.boxes.classes", "must list class names (non-empty strings)")
    columns = bnode.get("box_columns", ["x0", "y0", "x1", "y1"])
    if not _string_list(columns) or len(columns) != 4:
        chk.fail(bnode, "box_columns", f"{path}.boxes.box_columns", "must list four column names")
    box_format = chk.choice(bnode, "box_format", f"{path}.boxes.box_format", ("xyxy", "xywh")) or "xyxy"
    return BoxSpec(
        format=fmt,
        file=chk.string(bnode, "file", f"{path}.boxes.file"),
        pattern=chk.string(bnode, "pattern", f"{path}.boxes.pattern"),
        classes=tuple(str(c) for c in bnode.get("classes") or ()),
        image_column=chk.string(bnode, "image_column", f"{path}.boxes.image_column") or BoxSpec.image_column,
        label_column=chk.string(bnode, "label_column", f"{path}.boxes.label_column") or BoxSpec.label_column,
        box_columns=tuple(str(c) for c in columns),
        box_format=box_format,
    )


def _parse_expert(chk: _Checker, node: LineDict, path: str, base: Path) -> ExpertSpec:
    enode = chk.mapping(node.get("expert"), node, "expert", f"{path}.expert")
    chk.unknown_keys(enode, EXPERT_KEYS, f"{path}.expert")
    kind = chk.choice(enode, "kind", f"{path}.expert.kind", EXPERT_KINDS, required=True)
    model_path = (base / chk.string(enode, "path", f"{path}.expert.path", required=True)).resolve()
    if not model_path.exists():
        chk.fail(enode, "path", f"{path}.expert.path", f"{model_path} does not exist")
    trust_code = chk.boolean(enode, "trust_code", f"{path}.expert.trust_code")
    if kind in CODE_KINDS and not trust_code:
        what = "TorchScript is code" if kind == "torchscript" else "a MONAI bundle's config evaluates expressions"
        chk.fail(enode, "kind", f"{path}.expert.kind", f"{kind} runs code from the model files on load ({what}); set `trust_code: true` "
                 "to accept that, or use kind state_dict (weights only)")
    network, args = None, "{}"
    if kind == "state_dict":
        net = chk.mapping(enode.get("network"), enode, "network", f"{path}.expert.network")
        network = chk.choice(net, "name", f"{path}.expert.network.name", ALLOWED_NETWORKS, required=True)
        arguments = net.get("args") or {}
        if not isinstance(arguments, dict) or not _plain(arguments):
            chk.fail(net, "args", f"{path}.expert.network.args", "must map argument names to numbers, strings, booleans or lists of them")
        args = json.dumps(dict(arguments), sort_keys=True)
    labels = _parse_label_map(chk, enode, f"{path}.expert", key="labels")
    if not labels:
        chk.fail(enode, "labels", f"{path}.expert.labels", "must map output channels (1, 2, ...) to label names")
    roi = enode.get("roi_size", [96, 96])
    if not (isinstance(roi, list) and len(roi) == 2 and all(_whole(v) and v > 0 for v in roi)):
        chk.fail(enode, "roi_size", f"{path}.expert.roi_size", "must be two positive whole numbers")
    device = chk.string(enode, "device", f"{path}.expert.device") or "auto"
    return ExpertSpec(
        kind=kind,
        path=model_path,
        labels=labels,
        network=network,
        network_args=args,
        roi_size=(roi[0], roi[1]),
        sw_batch_size=chk.integer(enode, "sw_batch_size", f"{path}.expert.sw_batch_size", 4, minimum=1),
        overlap=chk.integer(enode, "overlap", f"{path}.expert.overlap", 0.25, kind=float),
        batch_size=chk.integer(enode, "batch_size", f"{path}.expert.batch_size", 8, minimum=1),
        in_channels=chk.integer(enode, "in_channels", f"{path}.expert.in_channels", 1, minimum=1),
        device=device,
        trust_code=trust_code,
    )


def _plain(value) -> bool:
    """Numbers, strings, booleans, null, and lists or mappings of them: nothing a config could evaluate."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and not k.startswith("_") and _plain(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float, str))


def _parse_label_map(chk: _Checker, node: LineDict, path: str, key: str = "label_map", names_allowed: bool = False) -> tuple[tuple[int | str, str], ...]:
    value = node.get(key) or {}
    if not isinstance(value, dict):
        chk.fail(node, key, f"{path}.{key}", "must map label values to names")
    out = []
    for k, v in value.items():
        if isinstance(k, bool) or not isinstance(k, (int, str)) or (isinstance(k, str) and not names_allowed):
            chk.fail(value, k, f"{path}.{key}.{k}", "label values must be whole numbers")
        if not isinstance(v, str) or not v.strip():
            chk.fail(value, k, f"{path}.{key}.{k}", f"must be a label name (a string), not {_shown(v)}")
        out.append((k, v))
    return tuple(sorted(out, key=lambda kv: (isinstance(kv[0], str), kv[0])))


def _parse_label_windows(chk: _Checker, node: LineDict, path: str) -> tuple[tuple[str, str], ...]:
    windows = node.get("label_windows") or {}
    if not isinstance(windows, dict):
        chk.fail(node, "label_windows", f"{path}.label_windows", "must map label names to CT window presets")
    for name in windows:
        chk.choice(windows, name, f"{path}.label_windows.{name}", tuple(CT_WINDOWS))
    return tuple(sorted((str(k), str(v)) for k, v in windows.items()))


def _parse_axes(chk: _Checker, node: LineDict, path: str) -> tuple[str, ...]:
    axes = node.get("slice_axes", ["axial"])
    if not isinstance(axes, list) or not axes or any(a not in ("axial", "coronal", "sagittal") for a in axes):
        chk.fail(node, "slice_axes", f"{path}.slice_axes", "must list one or more of axial, coronal, sagittal")
    return tuple(dict.fromkeys(axes))


def _parse_volume_index(chk: _Checker, node: LineDict, path: str) -> str | int | None:
    value = node.get("volume_index")
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or value in VOLUME_INDEX:
        return value
    chk.fail(node, "volume_index", f"{path}.volume_index", f"must be one of {', '.join(VOLUME_INDEX)} or a whole number from 0")


def _parse_band(chk: _Checker, node: LineDict, path: str) -> float:
    band = chk.integer(node, "midline_band", f"{path}.midline_band", 0.10, kind=float)
    if band >= 0.5:
        chk.fail(node, "midline_band", f"{path}.midline_band", "must be below 0.5 (a share of the body's width on each side of its centre)")
    return band


def _check_fields(chk: _Checker, node: LineDict, path: str, images: str) -> None:
    """Every `{field}` a mask, labels or boxes pattern uses must be a named group of `images`."""
    groups = set(re.compile(images).groupindex)
    templates = [(node, "labels", f"{path}.labels")]
    templates += [(m, "pattern", f"{path}.masks[{i}].pattern") for i, m in enumerate(node.get("masks") or []) if isinstance(m, LineDict)]
    if isinstance(node.get("boxes"), LineDict):
        templates.append((node["boxes"], "pattern", f"{path}.boxes.pattern"))
    for owner, key, where in templates:
        value = owner.get(key)
        if not isinstance(value, str):
            continue
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            chk.fail(owner, key, where, f"is not a valid template ({exc}); write a literal brace as {{{{ or }}}}")
        missing = sorted(f for f in fields if f not in groups)
        if missing:
            chk.fail(owner, key, where, f"uses {{{missing[0]}}}, which is not a named group of `images` (named groups: {', '.join(sorted(groups)) or 'none'})")


def _check_inside(chk: _Checker, owner, key: str, where: str, root: Path) -> None:
    if not (isinstance(owner, LineDict) and isinstance(owner.get(key), str)):
        return
    try:
        resolved = (root / owner[key]).resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a symlink loop
        chk.fail(owner, key, where, f"{owner[key]} is a symlink loop")
    if not resolved.is_relative_to(root):
        chk.fail(owner, key, where, f"{owner[key]} resolves outside the source root {root}; only files under the root are read")


def _parse_vocabulary_file(chk: _Checker, doc: LineDict, base: Path) -> Path | None:
    """`vocabulary:` a YAML file of terms extending the bundled vocabulary, checked as it loads."""
    if "vocabulary" not in doc:
        return None
    file = (base / chk.string(doc, "vocabulary", "vocabulary", required=True)).resolve()
    if not file.is_file():
        chk.fail(doc, "vocabulary", "vocabulary", f"file {file} does not exist")
    try:
        load_vocabulary(str(file))
    except (ValueError, yaml.YAMLError) as exc:
        chk.fail(doc, "vocabulary", "vocabulary", str(exc))
    return file


def _parse_terms(chk: _Checker, node: LineDict, path: str, vocabulary_file: Path | None) -> tuple[tuple[str, str], ...]:
    """`terms: {GGO: ground-glass opacity}`: each target must be a term (or synonym) of the vocabulary."""
    value = node.get("terms") or {}
    if not isinstance(value, dict):
        chk.fail(node, "terms", f"{path}.terms", "must map source labels to canonical vocabulary terms")
    vocabulary = load_vocabulary(str(vocabulary_file) if vocabulary_file else None)
    out = []
    for label, target in value.items():
        if not isinstance(target, str):
            chk.fail(value, label, f"{path}.terms.{label}", f"must be a vocabulary term (a string), not {_shown(target)}")
        found = vocabulary.lookup(target)
        if found is None:
            chk.fail(value, label, f"{path}.terms.{label}", f"'{target}' is not a term of the vocabulary; add it to your `vocabulary:` file")
        out.append((str(label), found.term))
    return tuple(sorted(out))


def _parse_findings(chk: _Checker, node: LineDict, path: str) -> tuple[str, ...] | None:
    if "findings" not in node:
        return None
    value = node["findings"]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        chk.fail(node, "findings", f"{path}.findings", "must list the source's labels that are findings")
    return tuple(sorted(set(value)))


QUALITY_KEYS = {"severity", "label_ranges", "description_chars"}
SEVERITY_NAMES = ("empty_mask", "duplicate_mask", "outlier", "length", "patient_data")


def _pair(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) and value[0] <= value[1]


def _parse_quality(chk: _Checker, node: LineDict, path: str) -> str:
    """`quality:` severities (error | warn) of the suites' expectations, per-label ranges of area ratio
    and count, and description length bounds; kept as JSON (the config stays hashable)."""
    if "quality" not in node:
        return "{}"
    q = chk.mapping(node["quality"], node, "quality", f"{path}.quality")
    chk.unknown_keys(q, QUALITY_KEYS, f"{path}.quality")
    severity = q.get("severity") or {}
    if not isinstance(severity, dict):
        chk.fail(q, "severity", f"{path}.quality.severity", f"must map expectations ({', '.join(SEVERITY_NAMES)}) to error or warn")
    for name in severity:
        if name not in SEVERITY_NAMES:
            chk.fail(severity, name, f"{path}.quality.severity.{name}", f"unknown expectation (known: {', '.join(SEVERITY_NAMES)})")
        chk.choice(severity, name, f"{path}.quality.severity.{name}", ("error", "warn"))
    ranges = q.get("label_ranges") or {}
    if not isinstance(ranges, dict):
        chk.fail(q, "label_ranges", f"{path}.quality.label_ranges", "must map labels to {area_ratio: [lo, hi], count: [lo, hi]}")
    for label, spec in ranges.items():
        if not isinstance(spec, dict) or set(spec) - {"area_ratio", "count"} or not all(_pair(v) for v in spec.values()):
            chk.fail(ranges, label, f"{path}.quality.label_ranges.{label}", "must be {area_ratio: [lo, hi], count: [lo, hi]} with lo <= hi")
    chars = q.get("description_chars")
    if chars is not None and not _pair(chars):
        chk.fail(q, "description_chars", f"{path}.quality.description_chars", "must be [min, max] characters")
    return json.dumps({"severity": dict(severity), "label_ranges": {k: dict(v) for k, v in ranges.items()}, **({"description_chars": chars} if chars else {})}, sort_keys=True)


def _parse_mmr(chk: _Checker, node: LineDict, path: str) -> float | None:
    if node.get("mmr") is None:
        return None
    value = chk.integer(node, "mmr", f"{path}.mmr", None, kind=float)
    if value > 1:
        chk.fail(node, "mmr", f"{path}.mmr", "must be from 0 (diversity only) to 1 (relevance only)")
    return value


def _parse_generator(chk: _Checker, parent: LineDict, where: str, base: Path, default: GeneratorSpec) -> GeneratorSpec:
    """A generator mapping; keys it leaves out come from `default` (the top-level `generator:`)."""
    key = where.rsplit(".", 1)[-1]
    node = chk.mapping(parent[key], parent, key, where)
    chk.unknown_keys(node, GENERATOR_KEYS, where)
    backend = chk.choice(node, "backend", f"{where}.backend", BACKENDS) or default.backend
    values = {"backend": backend}
    for name in ("model", "url", "api_key_env", "prompt", "device", "dtype"):
        if name in node:
            values[name] = chk.string(node, name, f"{where}.{name}")
    for name, minimum in (("max_new_tokens", 1), ("concurrency", 1), ("retries", 0), ("batch_size", 1)):
        if name in node:
            values[name] = chk.integer(node, name, f"{where}.{name}", None, minimum=minimum)
    for name in ("temperature", "timeout_s", "backoff_s"):
        if name in node:
            values[name] = chk.integer(node, name, f"{where}.{name}", None, kind=float)
    spec = replace(default, **values)
    if backend == "transformers":
        if not spec.model:
            chk.fail(node, "backend", f"{where}.model", "the transformers backend needs `model`: a local model folder")
        folder = (base / spec.model).resolve()
        if not folder.is_dir():
            chk.fail(node, "model" if "model" in node else "backend", f"{where}.model", f"folder {folder} does not exist")
        spec = replace(spec, model=str(folder))
    if backend == "openai":
        if not (spec.url and spec.model):
            chk.fail(node, "backend", f"{where}.url", "the openai backend needs `url` (the server's base URL, e.g. http://127.0.0.1:8000/v1) and `model`")
        if not re.match(r"^https?://", spec.url):
            chk.fail(node, "url", f"{where}.url", "must start with http:// or https://")
    if spec.api_key_env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", spec.api_key_env):
        chk.fail(node, "api_key_env", f"{where}.api_key_env", "must name an environment variable (the key itself never goes in the file)")
    if spec.device not in ("auto", "cpu", "cuda") and not re.match(r"^cuda:\d+$", spec.device):
        chk.fail(node, "device", f"{where}.device", "must be auto, cpu, cuda or cuda:N")
    if spec.dtype not in ("auto", "bfloat16", "float16", "float32"):
        chk.fail(node, "dtype", f"{where}.dtype", "must be auto, bfloat16, float16 or float32")
    from medtrinity_core.describe.prompts import PromptError, load_prompt

    try:
        prompt = load_prompt(spec.prompt, base)
    except PromptError as exc:
        chk.fail(node, "prompt" if "prompt" in node else "backend", f"{where}.prompt", str(exc))
    return replace(spec, prompt=prompt.ref)


def _parse_retrieval(chk: _Checker, doc: LineDict, base: Path) -> RetrievalConfig:
    node = chk.mapping(doc["retrieval"], doc, "retrieval", "retrieval")
    chk.unknown_keys(node, RETRIEVAL_KEYS, "retrieval")
    model_dir = chk.string(node, "model_dir", "retrieval.model_dir")
    if model_dir is not None:
        model_dir = (base / model_dir).resolve()
        if not model_dir.is_dir():
            chk.fail(node, "model_dir", "retrieval.model_dir", f"folder {model_dir} does not exist")
    max_tokens = chk.integer(node, "max_tokens", "retrieval.max_tokens", RetrievalConfig.max_tokens, minimum=8)
    overlap = chk.integer(node, "overlap_tokens", "retrieval.overlap_tokens", RetrievalConfig.overlap_tokens)
    if overlap >= max_tokens // 2:
        chk.fail(node, "overlap_tokens", "retrieval.overlap_tokens", f"must be under half of max_tokens ({max_tokens // 2})")
    server = chk.string(node, "server", "retrieval.server")
    if server is not None and not re.match(r"^https?://[^/:]+(:\d+)?/?$", server):
        chk.fail(node, "server", "retrieval.server", "must be http(s)://host[:port]")
    token_env = chk.string(node, "token_env", "retrieval.token_env")
    if token_env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", token_env):
        chk.fail(node, "token_env", "retrieval.token_env", "must name an environment variable (the token itself never goes in the file)")
    collection = chk.string(node, "collection", "retrieval.collection") or RetrievalConfig.collection
    if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$", collection):
        chk.fail(node, "collection", "retrieval.collection", "must be 3-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit")
    rerun = chk.boolean(node, "rerun_contexts", "retrieval.rerun_contexts")
    return RetrievalConfig(
        model_dir=model_dir, rerun_contexts=rerun,
        query_prefix=chk.string(node, "query_prefix", "retrieval.query_prefix") or "",
        passage_prefix=chk.string(node, "passage_prefix", "retrieval.passage_prefix") or "",
        max_tokens=max_tokens, overlap_tokens=overlap, server=server, token_env=token_env, collection=collection,
    )


def _parse_source(chk: _Checker, node: LineDict, path: str, base: Path, defaults: dict, vocabulary_file: Path | None = None) -> SourceConfig:
    chk.unknown_keys(node, SOURCE_KEYS, path)
    for key in REQUIRED:
        chk.string(node, key, f"{path}.{key}", required=True)
    name = str(node["name"])
    if not NAME_RE.match(name):
        chk.fail(node, "name", f"{path}.name", "must be lower-case letters, digits and '-' (2-63 characters)")
    modality = chk.choice(node, "modality", f"{path}.modality", tuple(MODALITIES))
    license_id = str(node["license"])
    if not LICENSE_RE.match(license_id):
        chk.fail(node, "license", f"{path}.license", "must be an SPDX identifier or LicenseRef-<name>")
    layout = chk.choice(node, "layout", f"{path}.layout", LAYOUTS)
    images = chk.regex(node, "images", f"{path}.images", required=True)
    window = chk.choice(node, "window", f"{path}.window", tuple(CT_WINDOWS))
    labels_csv = None
    if "labels_csv" in node:
        lc = chk.mapping(node["labels_csv"], node, "labels_csv", f"{path}.labels_csv")
        chk.unknown_keys(lc, {"file", "image_column", "label_column"}, f"{path}.labels_csv")
        labels_csv = LabelsCsv(*(chk.string(lc, k, f"{path}.labels_csv.{k}", required=True) for k in ("file", "image_column", "label_column")))
    if layout == "volume_labels":
        chk.regex(node, "labels", f"{path}.labels", required=True)
    if layout == "image_boxes" and "boxes" not in node:
        chk.fail(node, "layout", f"{path}.boxes", "layout image_boxes needs a `boxes` mapping")
    if layout == "labeled_images" and not ("label" in node or labels_csv or "(?P<label>" in images):
        chk.fail(node, "images", f"{path}.images", "labeled_images needs a `label` group, a `label` key or `labels_csv`")
    merged = {k: node.get(k, defaults[k]) for k in DEFAULTS}
    numbers = {k: chk.integer(node, k, f"{path}.{k}", merged[k], minimum=POSITIVE.get(k, 0), kind=type(DEFAULTS[k])) for k in DEFAULTS}
    _check_fields(chk, node, path, images)
    root = _resolve_root(chk, node, "root", f"{path}.root", base)
    _check_inside(chk, node.get("labels_csv"), "file", f"{path}.labels_csv.file", root)
    _check_inside(chk, node.get("boxes"), "file", f"{path}.boxes.file", root)
    return SourceConfig(
        name=name,
        modality=modality,
        license=license_id,
        root=root,
        layout=layout,
        images=images,
        body_region=chk.string(node, "body_region", f"{path}.body_region"),
        license_note=chk.string(node, "license_note", f"{path}.license_note"),
        citation=chk.string(node, "citation", f"{path}.citation"),
        masks=_parse_masks(chk, node, path) if layout == "image_masks" else (),
        labels=chk.string(node, "labels", f"{path}.labels"),
        label_map=_parse_label_map(chk, node, path, names_allowed=layout == "dicom"),
        label=chk.string(node, "label", f"{path}.label"),
        labels_csv=labels_csv,
        window=window,
        paths_identify_patients=chk.boolean(node, "paths_identify_patients", f"{path}.paths_identify_patients"),
        allow_burned_in=chk.boolean(node, "allow_burned_in", f"{path}.allow_burned_in"),
        slice_axes=_parse_axes(chk, node, path),
        slice_every=chk.integer(node, "slice_every", f"{path}.slice_every", 1, minimum=1),
        min_slice_fraction=chk.integer(node, "min_slice_fraction", f"{path}.min_slice_fraction", 0.0, kind=float),
        label_windows=_parse_label_windows(chk, node, path),
        boxes=_parse_boxes(chk, node, path) if "boxes" in node else None,
        expert=_parse_expert(chk, node, path, base) if "expert" in node else None,
        proposals=chk.boolean(node, "proposals", f"{path}.proposals"),
        include_proposals=chk.boolean(node, "include_proposals", f"{path}.include_proposals"),
        orientation=chk.choice(node, "orientation", f"{path}.orientation", ORIENTATIONS),
        volume_index=_parse_volume_index(chk, node, path),
        midline_band=_parse_band(chk, node, path),
        terms=_parse_terms(chk, node, path, vocabulary_file),
        findings=_parse_findings(chk, node, path),
        mmr=_parse_mmr(chk, node, path),
        quality=_parse_quality(chk, node, path),
        vocabulary=vocabulary_file,
        **numbers,
    )


CORPUS_FORMATS = ("medquad", "jsonl", "text")


def _parse_knowledge(chk: _Checker, node: LineDict, base: Path, where: str) -> KnowledgeConfig:
    chk.unknown_keys(node, KNOWLEDGE_KEYS, where)
    fmt = chk.choice(node, "format", f"{where}.format", CORPUS_FORMATS, required=True)
    include = node.get("include") or []
    if not _string_list(include):
        chk.fail(node, "include", f"{where}.include", "must be a list of glob patterns")
    name = chk.string(node, "name", f"{where}.name", required=True)
    if not NAME_RE.match(name):
        chk.fail(node, "name", f"{where}.name", "must be lower-case letters, digits and '-' (2-63 characters)")
    return KnowledgeConfig(
        name=name,
        format=fmt,
        root=_resolve_root(chk, node, "root", f"{where}.root", base),
        license=chk.string(node, "license", f"{where}.license", required=True),
        citation=chk.string(node, "citation", f"{where}.citation"),
        include=tuple(str(p) for p in include),
    )


def _parse_corpora(chk: _Checker, doc: LineDict, base: Path) -> tuple[KnowledgeConfig, ...]:
    """`knowledge:` is one corpus (a mapping) or a list of them, with distinct names."""
    value = doc["knowledge"]
    entries = value if isinstance(value, list) else [value]
    corpora, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"knowledge[{i}]" if isinstance(value, list) else "knowledge"
        corpus = _parse_knowledge(chk, chk.mapping(entry, doc, "knowledge", where), base, where)
        if corpus.name in seen:
            chk.fail(entry, "name", f"{where}.name", f"duplicate corpus name '{corpus.name}'")
        seen.add(corpus.name)
        corpora.append(corpus)
    return tuple(corpora)


def load_sources(path: str | Path) -> SourcesFile:
    """Read and validate a sources file; raises `SourcesFileError` on the first problem."""
    path = Path(path)
    chk = _Checker(path)
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
    chk.unknown_keys(doc, TOP_KEYS, "")
    if not (_whole(doc.get("version")) and doc.get("version") == 1):
        chk.fail(doc, "version", "version", "must be 1")
    defaults = dict(DEFAULTS)
    if "defaults" in doc:
        dnode = chk.mapping(doc["defaults"], doc, "defaults", "defaults")
        chk.unknown_keys(dnode, set(DEFAULTS), "defaults")
        defaults.update({k: chk.integer(dnode, k, f"defaults.{k}", defaults[k], minimum=POSITIVE.get(k, 0), kind=type(DEFAULTS[k])) for k in DEFAULTS})
    entries = doc.get("sources")
    if not isinstance(entries, list) or not entries:
        chk.fail(doc, "sources", "sources", "must be a non-empty list")
    base = path.resolve().parent
    vocabulary_file = _parse_vocabulary_file(chk, doc, base)
    default_generator = _parse_generator(chk, doc, "generator", base, GeneratorSpec()) if "generator" in doc else GeneratorSpec()
    sources, seen = [], set()
    for i, entry in enumerate(entries):
        node = chk.mapping(entry, doc, "sources", f"sources[{i}]")
        src = _parse_source(chk, node, f"sources[{i}]", base, defaults, vocabulary_file)
        if "generator" in node:
            src = replace(src, generator=_parse_generator(chk, node, f"sources[{i}].generator", base, default_generator))
        else:
            src = replace(src, generator=default_generator)
        if src.name in seen:
            chk.fail(node, "name", f"sources[{i}].name", f"duplicate source name '{src.name}'")
        seen.add(src.name)
        sources.append(src)
    if "decontamination" in doc:
        dnode = chk.mapping(doc["decontamination"], doc, "decontamination", "decontamination")
        chk.unknown_keys(dnode, {"hashes"}, "decontamination")
        hashes = (base / chk.string(dnode, "hashes", "decontamination.hashes", required=True)).resolve()
        if not hashes.is_file():
            chk.fail(dnode, "hashes", "decontamination.hashes", f"file {hashes} does not exist")
        sources = [replace(s, benchmark_hashes=hashes) for s in sources]
    corpora = _parse_corpora(chk, doc, base) if "knowledge" in doc else ()
    retrieval = _parse_retrieval(chk, doc, base) if "retrieval" in doc else RetrievalConfig()
    return SourcesFile(path=path.resolve(), sources=tuple(sources), corpora=corpora, defaults=defaults, retrieval=retrieval, vocabulary=vocabulary_file,
                       generator=default_generator)
