"""The burned-in text screen's tokens, hashes and matching, and Tesseract reading rendered text."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from platform_core.dicom import burned_in, ocr

SECRET = "unit-" + "k" * 32


def header() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Hartfield^Margaret^J^^Dr"
    ds.PatientID = "MRN-58302917"
    ds.AccessionNumber = "A7731"
    ds.PatientBirthDate = "19510203"
    other = Dataset()
    other.PatientID = "XK 4410"
    ds.OtherPatientIDsSequence = Sequence([other])
    return ds


def render(lines: list[tuple[tuple[int, int], str]], size: int = 480, font: int = 36) -> np.ndarray:
    """A radiograph-like float image with text drawn in its brightest value (as modalities burn it)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    base = (x + y) * (1500 / (2 * size)) + rng.normal(0, 40, (size, size))
    img = Image.fromarray(base.astype(np.float32), mode="F")
    draw = ImageDraw.Draw(img)
    for xy, text in lines:
        draw.text(xy, text, fill=4095.0, font=ImageFont.load_default(size=font))
    return np.asarray(img, dtype=np.float32)


def test_header_tokens_split_names_keep_ids_whole_and_render_the_birth_date() -> None:
    tokens = burned_in.header_tokens(header())
    n = burned_in.normalise
    assert {n("HARTFIELD"), n("MARGARET"), n("MRN58302917"), n("A7731"), n("XK4410")} <= tokens
    assert not {n("J"), n("DR")} & tokens  # shorter than three characters
    for printed in ("1951-02-03", "03/02/1951", "02.03.1951", "3/2/1951", "03-FEB-1951", "19510203"):
        assert n(printed) in tokens, printed


def test_normalise_folds_case_separators_and_digit_lookalikes() -> None:
    assert burned_in.normalise("mrn: 58302917") == burned_in.normalise("MRN58302917")
    assert burned_in.normalise("1O0-2I") == burned_in.normalise("10021")


def test_hashes_hold_no_value_and_depend_on_the_secret() -> None:
    hashes = burned_in.header_hashes(SECRET, header())
    text = " ".join(hashes).upper()
    assert all(len(h) == 2 * burned_in.HASH_BYTES and int(h, 16) >= 0 for h in hashes)
    for value in ("HARTFIELD", "MARGARET", "58302917", "A7731", "19510203"):
        assert value not in text
    assert set(hashes).isdisjoint(burned_in.header_hashes("other-" + "k" * 32, header()))


def test_matching_finds_split_and_joined_words_only() -> None:
    hashes = burned_in.header_hashes(SECRET, header())
    assert burned_in.matches(SECRET, hashes, [["HARTFIELD,", "MARGARET"]])
    assert burned_in.matches(SECRET, hashes, [["ID:", "XK", "4410"]])  # split by a space, joined back
    assert burned_in.matches(SECRET, hashes, [["DOB", "03/02/1951"]])
    assert burned_in.matches(SECRET, hashes, [["MRN:58302917"]])
    assert not burned_in.matches(SECRET, hashes, [["L"], ["PORTABLE", "AP"], ["2023-04-17"]])
    assert not burned_in.matches(SECRET, hashes, [["XK"], ["4410"]])  # not on one line


def test_date_renderings_ignore_what_is_not_a_date() -> None:
    assert burned_in.date_renderings("") == []
    assert burned_in.date_renderings("19511303") == []
    assert "03021951" in burned_in.date_renderings("19510203")


def test_tesseract_reads_a_burned_in_name_and_mrn() -> None:
    img = render([((16, 16), "HARTFIELD, MARGARET"), ((16, 80), "MRN: 58302917")])
    assert burned_in.finds_phi(SECRET, burned_in.header_hashes(SECRET, header()), img)


def test_a_marker_and_an_annotation_are_read_but_do_not_match() -> None:
    img = render([((16, 16), "L"), ((200, 16), "PORTABLE")])
    words = {w for line in ocr.read_lines(img) for w in line}
    assert "PORTABLE" in words
    assert not burned_in.finds_phi(SECRET, burned_in.header_hashes(SECRET, header()), img)


def test_only_the_extremes_of_a_large_image_are_read_at_a_bounded_size() -> None:
    img = render([((16, 16), "HARTFIELD")], size=4000, font=200)
    masks = ocr.extreme_masks(img)
    assert [m.size for m in masks] == [(ocr.MAX_SIDE, ocr.MAX_SIDE)] * 2  # bright end (the text), dark end
    text = np.asarray(masks[0]) == 0
    assert 0 < text.mean() < 0.05 and text[:200].any() and not text[400:].any()
    assert ocr.extreme_masks(np.full((64, 64), 7.0, dtype=np.float32)) == []  # constant: nothing to read


def test_missing_tesseract_data_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr, "TESSDATA_GLOBS", ())
    monkeypatch.setenv("TESSDATA_PREFIX", "/nonexistent")
    with pytest.raises(ocr.OcrUnavailable, match="tesseract-ocr-eng"):
        ocr.tessdata_dir()
