"""The ten modalities and how each is named and measured in text."""

from __future__ import annotations

MODALITIES: dict[str, str] = {
    "ct": "CT",
    "mri": "MRI",
    "xray": "X-ray",
    "ultrasound": "ultrasound",
    "dermoscopy": "dermoscopy",
    "endoscopy": "endoscopy",
    "fundus": "fundus photography",
    "histopathology": "histopathology",
    "pet": "PET",
    "microscopy": "microscopy",
}

# Words for "brighter / similar / darker than the surrounding tissue", per modality.
INTENSITY_WORDS: dict[str, tuple[str, str, str]] = {
    "ct": ("hyperdense", "isodense", "hypodense"),
    "mri": ("hyperintense", "isointense", "hypointense"),
    "pet": ("more FDG-avid", "similarly avid", "less FDG-avid"),
    "ultrasound": ("hyperechoic", "isoechoic", "hypoechoic"),
    "xray": ("more radiopaque", "similarly opaque", "more radiolucent"),
}
DEFAULT_INTENSITY_WORDS = ("brighter", "similar in brightness", "darker")


def display_name(modality: str) -> str:
    return MODALITIES[modality]
