"""PACS connectivity: the DICOM listener, PACS nodes, imports by query."""
