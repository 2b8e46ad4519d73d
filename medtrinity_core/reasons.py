"""Quarantine reasons: the one table of every `reason` a stage writes to a quarantine row.

Each stage uses the constants below (`EMPTY_FILE`, never the string `"empty_file"`), and
`records.quarantine_row` refuses a name that is not in `REASONS`, so a new reason is added here, with
its stage and meaning, or not at all. The README's table of reasons is this one (a test compares them).
The strings are what the quarantine Parquet files hold: never rename one.
"""

from __future__ import annotations

from dataclasses import dataclass

STAGES = ("raw", "normalized", "rois", "context", "descriptions", "triplets")


@dataclass(frozen=True)
class Reason:
    name: str
    stage: str | tuple[str, ...]  # the stage (or stages) that records it
    meaning: str  # one plain sentence for a data engineer
    retryable: bool  # a transient cause (an I/O error, a model server): a re-run may heal it
    withdrawn: bool = False  # removed on request, not a defect of the data (outside the quarantine share)
    not_data: bool = False  # never data (hidden files): outside the quarantine share

    @property
    def stages(self) -> tuple[str, ...]:
        return self.stage if isinstance(self.stage, tuple) else (self.stage,)


_RAW, _NORM, _RAW_NORM = "raw", "normalized", ("raw", "normalized")

_TABLE = (
    # -- raw: discovery (the shard plan) and the inventory ----------------------------------------------
    Reason("hidden_file", _RAW, "A dot-file, a file in a dot-folder or OS junk such as Thumbs.db or __MACOSX, never read (rename it to include it).", False, not_data=True),
    Reason("undecodable_name", _RAW, "A file, folder or annotation name that is not UTF-8 (the bytes escaped in the relpath and detail).", False),
    Reason("outside_root", _RAW_NORM, "The file, an annotation file or a data file its header names resolves outside the source root, so it is not read.", False),
    Reason("symlink_loop", _RAW_NORM, "A symlink that leads back to a symlink on its way and never to a file, so it is not read.", False),
    Reason("symlinked_folder", _RAW, "A symlinked folder inside the source root, never followed (its files are read under their real path).", False),
    Reason("unsupported_format", _RAW, "A file the images pattern selects whose extension is not a known image, volume or DICOM format.", False),
    Reason("no_mask", _RAW, "An image_masks image whose mask patterns match no file.", False),
    Reason("unreferenced_annotation", _RAW, "A DICOM SEG or RTSTRUCT whose series is not in the source and no series there shares its frame of reference.", False),
    Reason("discovery_error", _RAW, "The source could not be listed as a whole (a labels CSV that cannot be read, say): each planned file of the shard gets it.", False),
    Reason("missing", _RAW_NORM, "A planned file that is gone or no longer matches the images pattern, or whose private path is no longer known.", False),
    Reason("empty_file", _RAW, "A file of zero bytes.", False),
    Reason("unreadable", _RAW_NORM, "A file, or a folder under which images could select a file, that cannot be read or listed (a permission or I/O error, a dangling symlink), or a header that cannot be parsed.", True),
    Reason("missing_annotation", ("raw", "rois"), "A box, label or annotation file the item needs cannot be read, or a precomputed expert's output for it is missing (no file matches its pattern, no CheXmask row names it).", False),
    Reason("taken_down", STAGES, "A takedown request covers the item (its id, its path, or its patient once a header names it): withdrawn on request by whichever stage meets it, not a defect.", False, withdrawn=True),
    # -- normalized: decoding ---------------------------------------------------------------------------
    Reason("not_an_image", _NORM, "A raster file no image decoder recognises.", False),
    Reason("truncated", _NORM, "Pixel data shorter than the header says.", False),
    Reason("incomplete_header", _NORM, "The DICOM pixel module or file meta lacks what decoding needs.", False),
    Reason("undecodable_pixels", _NORM, "DICOM pixel data that the decoder cannot read.", False),
    Reason("decode_error", _NORM, "A decoder failed in a way not foreseen (complex-valued k-space, say); the detail names the exception.", False),
    Reason("decompression_bomb", _NORM, "A 2D image over 100 M pixels, or a volume, DICOM object or series whose headers declare more than max_voxels.", False),
    Reason("non_finite_pixels", _NORM, "A float 2D image with NaN or infinite values.", False),
    Reason("non_finite_voxels", _NORM, "A volume or label volume with NaN or infinite voxels as stored, counted in the detail (NIfTI is checked through nibabel, as SimpleITK reads them as 0).", False),
    Reason("no_pixel_data", _NORM, "A DICOM object without pixel data (an RT plan, say).", False),
    Reason("burned_in_annotation", _NORM, "A DICOM file that declares BurnedInAnnotation = YES while the source does not allow_burned_in.", False),
    Reason("unsupported_transfer_syntax", _NORM, "A compressed DICOM transfer syntax that no installed decoder reads.", False),
    Reason("unsupported_dimension", _NORM, "A volume that is not 3D (a 4D file without volume_index, say).", False),
    Reason("volume_index_out_of_range", _NORM, "A volume_index past the last volume of a 4D file.", False),
    Reason("unsupported_pixel_type", _NORM, "A volume with more than one component per voxel.", False),
    Reason("missing_slices", _NORM, "A DICOM series or multi-frame object with a gap in its slice positions.", False),
    Reason("duplicate_slice_positions", _NORM, "A DICOM series or multi-frame object in which slices repeat a position.", False),
    Reason("inconsistent_series", _NORM, "A DICOM series whose slices differ in size or orientation, or whose frame count and positions disagree.", False),
    Reason("missing_geometry", _NORM, "A DICOM series slice without ImagePositionPatient or ImageOrientationPatient.", False),
    Reason("unsupported_series", _NORM, "A DICOM series member that is not a single-frame greyscale slice.", False),
    # -- normalized: annotations ------------------------------------------------------------------------
    Reason("ambiguous_annotation", _NORM, "Several label volumes, YOLO box files or expert outputs match one item; the pattern must pick one.", False),
    Reason("no_foreground", _NORM, "A volume with no label on any slice while negatives_per_volume is 0.", False),
    Reason("mask_shape_mismatch", _NORM, "A mask of another size than its image.", False),
    Reason("mask_geometry_mismatch", _NORM, "A label volume, SEG or RTSTRUCT that does not overlap its image in patient space.", False),
    Reason("empty_mask", _NORM, "A mask with no foreground pixel after thresholding (severity warn drops the mask instead).", False),
    Reason("duplicate_mask", _NORM, "Two identical masks of one image (severity warn drops the repeat instead).", False),
    Reason("bad_annotation", ("raw", "normalized", "rois"),
           "An annotation that cannot be used: an empty label, an unreadable box file or SEG, an unknown YOLO class, a SEG none of whose frames matches its series, "
           "an annotation on a series of 2D images; or an expert output not as its tool writes it (wrong keys, values or size) or not on its image's grid.", False),
    Reason("box_outside_image", _NORM, "A bounding box that lies outside its image.", False),
    # -- later stages -----------------------------------------------------------------------------------
    Reason("roi_error", "rois", "The expert model could not be loaded or failed on the image, or its masks could not be turned into ROIs.", False),
    Reason("generator_error", "descriptions", "The description generator failed on the image after its retries (a model server timeout or error, say).", True),
)

REASONS: dict[str, Reason] = {r.name: r for r in _TABLE}

HIDDEN_FILE = "hidden_file"
UNDECODABLE_NAME = "undecodable_name"
OUTSIDE_ROOT = "outside_root"
SYMLINK_LOOP = "symlink_loop"
SYMLINKED_FOLDER = "symlinked_folder"
UNSUPPORTED_FORMAT = "unsupported_format"
NO_MASK = "no_mask"
UNREFERENCED_ANNOTATION = "unreferenced_annotation"
DISCOVERY_ERROR = "discovery_error"
MISSING = "missing"
EMPTY_FILE = "empty_file"
UNREADABLE = "unreadable"
MISSING_ANNOTATION = "missing_annotation"
TAKEN_DOWN = "taken_down"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
INCOMPLETE_HEADER = "incomplete_header"
UNDECODABLE_PIXELS = "undecodable_pixels"
DECODE_ERROR = "decode_error"
DECOMPRESSION_BOMB = "decompression_bomb"
NON_FINITE_PIXELS = "non_finite_pixels"
NON_FINITE_VOXELS = "non_finite_voxels"
NO_PIXEL_DATA = "no_pixel_data"
BURNED_IN_ANNOTATION = "burned_in_annotation"
UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
UNSUPPORTED_DIMENSION = "unsupported_dimension"
VOLUME_INDEX_OUT_OF_RANGE = "volume_index_out_of_range"
UNSUPPORTED_PIXEL_TYPE = "unsupported_pixel_type"
MISSING_SLICES = "missing_slices"
DUPLICATE_SLICE_POSITIONS = "duplicate_slice_positions"
INCONSISTENT_SERIES = "inconsistent_series"
MISSING_GEOMETRY = "missing_geometry"
UNSUPPORTED_SERIES = "unsupported_series"
AMBIGUOUS_ANNOTATION = "ambiguous_annotation"
NO_FOREGROUND = "no_foreground"
MASK_SHAPE_MISMATCH = "mask_shape_mismatch"
MASK_GEOMETRY_MISMATCH = "mask_geometry_mismatch"
EMPTY_MASK = "empty_mask"
DUPLICATE_MASK = "duplicate_mask"
BAD_ANNOTATION = "bad_annotation"
BOX_OUTSIDE_IMAGE = "box_outside_image"
ROI_ERROR = "roi_error"
GENERATOR_ERROR = "generator_error"


def reason(name: str) -> str:
    """`name` when it is a quarantine reason in `REASONS`; ValueError naming it otherwise."""
    if name not in REASONS:
        raise ValueError(f"unknown quarantine reason {name!r}: add it to medtrinity_core/reasons.py (REASONS) with its stage and meaning")
    return name


def _check() -> None:
    """The constants and the table name the same reasons, and every stage is a pipeline stage."""
    constants = {v for k, v in globals().items() if k.isupper() and not k.startswith("_") and isinstance(v, str)}
    if constants != set(REASONS):
        raise AssertionError(f"reasons.py: constants and REASONS differ: {sorted(constants ^ set(REASONS))}")
    for r in REASONS.values():
        if not set(r.stages) <= set(STAGES):
            raise AssertionError(f"reasons.py: {r.name}: unknown stage {r.stage!r}")


_check()
