"""Imaging: decode rasters, volumes and DICOM; window and scale; slice to 2D; write content-addressed PNGs."""
