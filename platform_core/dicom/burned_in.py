"""The burned-in text screen: a file's own identifying values, as keyed hashes, against its pixels' words.

Before de-identification (in the API process, in memory) the header's names, IDs, accession number
and birth date become normalised tokens, and only keyed HMACs of them are kept (on the image row,
until its pixels are screened). The worker reads the pixels with Tesseract, normalises each word the
same way, hashes it under the same key and compares. Matching the file's own values, not any text, is
what lets an "L" marker or "PORTABLE" pass while a burned-in name or MRN does not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from platform_core.dicom import ocr

REASON = "burned_in_phi"
PURPOSE = "burned-in-text"
# Shorter tokens (initials, "L", "AP", a one-digit ID) match by chance and identify nobody.
MIN_TOKEN = 3
HASH_BYTES = 16
# Words OCR splits a value into ("AB 1234", "Dec 3, 1951") are joined back up to this many.
MAX_JOINED_WORDS = 3
NAME_KEYWORDS = ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName")
ID_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# Characters OCR confuses with digits read as those digits, on both sides of the comparison.
_CONFUSABLE = str.maketrans("OQILSBZ", "0011582")
_NOT_ALNUM = re.compile(r"[^0-9A-Z]+")


def normalise(text: str) -> str:
    """Uppercase, alphanumerics only, digit look-alikes folded: the same word from header and OCR."""
    return _NOT_ALNUM.sub("", text.upper()).translate(_CONFUSABLE)


def token_hash(secret: str, token: str) -> str:
    digest = hmac.new(secret.encode(), f"{PURPOSE}\x00{token}".encode(), hashlib.sha256).digest()
    return digest[:HASH_BYTES].hex()


def header_tokens(ds: Dataset) -> set[str]:
    """Names split into parts, IDs and accession whole, the birth date in its common renderings."""
    raw: list[str] = []
    for keyword in NAME_KEYWORDS:
        for value in _values(_get(ds, keyword)):
            raw.extend(re.split(r"[\^\s,=]+", value))
    for keyword in ID_KEYWORDS:
        raw.extend(_values(_get(ds, keyword)))
    others = _get(ds, "OtherPatientIDsSequence")
    for item in others if isinstance(others, Sequence) else []:
        raw.extend(_values(_get(item, "PatientID")))
    for value in _values(_get(ds, "PatientBirthDate")):
        raw.extend(date_renderings(value))
    return {t for t in map(normalise, raw) if len(t) >= MIN_TOKEN}


def header_hashes(secret: str, ds: Dataset) -> list[str]:
    """What the image row keeps until its pixels are screened: sorted keyed hashes, never a value."""
    return sorted({token_hash(secret, t) for t in header_tokens(ds)})


def date_renderings(value: str) -> list[str]:
    """YYYYMMDD as it is printed: Y-M-D, D/M/Y, M/D/Y (separators vanish in normalise), padded or not,
    two-digit years, month names."""
    digits = re.sub(r"\D", "", value)
    if len(digits) != 8:
        return []
    y, m, d = digits[:4], digits[4:6], digits[6:]
    if not ("01" <= m <= "12" and "01" <= d <= "31"):
        return []
    month, um, ud, yy = MONTHS[int(m) - 1], str(int(m)), str(int(d)), y[2:]
    out = [y + m + d, d + m + y, m + d + y, y + um + ud, ud + um + y, um + ud + y]
    out += [d + m + yy, m + d + yy, yy + m + d]
    out += [d + month + y, ud + month + y, month + d + y, month + ud + y, y + month + d, d + month + yy]
    return out


def ocr_candidates(lines: Iterable[list[str]]) -> set[str]:
    """Each OCR word whole and in its alphanumeric runs, and neighbours joined (IDs split by spaces)."""
    out: set[str] = set()
    for words in lines:
        whole = [normalise(w) for w in words]
        for word in words:
            out.update(normalise(part) for part in _NOT_ALNUM.split(word.upper()))
        for n in range(1, MAX_JOINED_WORDS + 1):
            out.update("".join(whole[i : i + n]) for i in range(len(whole) - n + 1))
    return {c for c in out if len(c) >= MIN_TOKEN}


def matches(secret: str, hashes: Iterable[str], lines: Iterable[list[str]]) -> bool:
    wanted = set(hashes)
    return any(token_hash(secret, c) in wanted for c in ocr_candidates(lines))


def finds_phi(secret: str, hashes: Iterable[str], img: np.ndarray) -> bool:
    """True when a word burned into the pixels is one of the header's identifying values."""
    return matches(secret, hashes, ocr.read_lines(img))


def _values(value: object) -> Iterator[str]:
    items = value if isinstance(value, list | tuple | MultiValue) else [] if value is None else [value]
    for item in items:
        text = str(item).strip()
        if text:
            yield text


def _get(ds: Dataset, keyword: str) -> object:
    try:
        return ds.get(keyword)
    except Exception:  # a value pydicom cannot convert: nothing to compare it with
        return None
