"""ROIs: regions from masks, measured (size, location, appearance, relations) so text states only facts."""
