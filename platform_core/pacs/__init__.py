"""PACS connectivity: the DICOM listener, PACS nodes, imports by query."""

import logging

# Logs must hold no original key. pynetdicom logs each C-FIND/C-MOVE request identifier
# (AccessionNumber, StudyInstanceUID) at INFO, and httpx each request's URL (a QIDO-RS query carries
# the key, a WADO-RS path the StudyInstanceUID): both speak only of trouble in processes that import this.
for _name in ("pynetdicom", "httpx"):
    logging.getLogger(_name).setLevel(logging.WARNING)
