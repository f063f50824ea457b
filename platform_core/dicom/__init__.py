"""DICOM: read and validate, de-identify by the standard's table, and turn pixels into the cache."""
