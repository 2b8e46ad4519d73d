"""Every reader over real files: nibabel's bundled NIfTI files and the project's shared samples."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medtrinity_core.errors import ItemError
from medtrinity_core.imaging.readers import read_mask, read_raster, read_volume

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


@pytest.mark.parametrize("name", ["anatomical.nii", "standard.nii.gz", "reoriented_anat_moved.nii"])
def test_nibabel_volumes_read_in_the_lps_frame(name):
    path = NIBABEL_DATA / name
    reference = nib.load(path)
    volume = read_volume(path)
    array = sitk.GetArrayViewFromImage(volume)
    assert array.size == int(np.prod(reference.shape[:3]))
    assert np.allclose(np.asarray(volume.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-6)  # LPS after orientation
    # the same voxel values, whatever the axis order or flips
    assert np.isclose(np.sort(array.ravel())[::max(1, array.size // 50)], np.sort(np.asarray(reference.dataobj).ravel())[::max(1, array.size // 50)]).all()


def test_nifti2_is_read_through_nibabel_with_the_same_geometry(tmp_path):
    reference = nib.load(NIBABEL_DATA / "anatomical.nii")
    nib.save(nib.Nifti2Image(np.asarray(reference.dataobj), reference.affine), tmp_path / "anat2.nii.gz")
    one, two = read_volume(NIBABEL_DATA / "anatomical.nii"), read_volume(tmp_path / "anat2.nii.gz")
    assert np.array_equal(sitk.GetArrayViewFromImage(one), sitk.GetArrayViewFromImage(two))
    assert np.allclose(one.GetOrigin(), two.GetOrigin(), atol=1e-4) and np.allclose(one.GetSpacing(), two.GetSpacing())
    with pytest.raises(ItemError) as err:
        read_volume(NIBABEL_DATA / "example_nifti2.nii.gz")  # a 4D NIfTI-2 time series
    assert err.value.reason == "unsupported_dimension"


def test_every_shared_sample_image_and_mask_decodes(samples):
    images = [p for p in samples.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".tif", ".gif")]
    assert len(images) > 100
    for path in images:
        if "mask" in path.parts or "masks" in path.parts or "1st_manual" in path.parts or "labelcol" in path.parts or "label" in path.parts:
            assert read_mask(path, 128 if path.suffix == ".jpg" else None).any(), path
        else:
            raster = read_raster(path)
            assert raster.pixels.dtype == np.uint8 and raster.pixels.ndim in (2, 3), path


@pytest.mark.parametrize("pattern", ["**/*.nii.gz", "**/*.nrrd"])
def test_every_shared_sample_volume_reads(samples, pattern):
    volumes = sorted(samples.glob(pattern))
    assert volumes
    for path in volumes:
        image = read_volume(path)
        assert image.GetDimension() == 3 and min(image.GetSize()) > 1, path
