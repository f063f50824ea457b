"""Values the profile writes: dates, times and date-times moved by one per-patient shift, and dummies.

The shift is a whole number of days plus a number of seconds, both back in time. Dates move by the
days and times of day by the seconds, wrapping at midnight; a DT moves its date part and its time
part the same way. So every date interval within a patient survives exactly, wherever it is written
(DA or DT), and time intervals within a day survive unless they wrap. A timezone offset goes.
Anything that does not parse as its VR goes too: ranges and malformed values are not guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pydicom.dataelem import DataElement

DUMMY = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "PN": "ANONYMOUS",
    "DS": "0",
    "IS": "0",
    "AS": "000Y",
    "CS": "ANONYMOUS",
    "SH": "ANONYMOUS",
    "LO": "ANONYMOUS",
    "LT": "ANONYMOUS",
    "ST": "ANONYMOUS",
    "UT": "ANONYMOUS",
    "UC": "ANONYMOUS",
    "AE": "ANONYMOUS",
}
NUMERIC_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
DT_VALUE = re.compile(r"(\d{8,14})(\.\d{1,6})?(?:[+-]\d{4})?")
DAY = 86400


@dataclass(frozen=True)
class DateShift:
    days: int  # 1..3650, back
    seconds: int  # 0..86399, back

    def da(self, text: str) -> str:
        day = _parse_da(text)
        return (day - timedelta(days=self.days)).strftime("%Y%m%d") if day else ""

    def tm(self, text: str) -> str:
        parsed = _parse_tm(text)
        if parsed is None:
            return ""
        secs, frac = parsed
        return _format_tm((secs - self.seconds) % DAY, frac)

    def dt(self, text: str) -> str:
        match = DT_VALUE.fullmatch(text.strip())
        digits = match.group(1) if match else ""
        if not match or len(digits) % 2:
            return ""
        padded = digits + "000000"[: 14 - len(digits)]
        day, clock = self.da(padded[:8]), self.tm(padded[8:14] + (match.group(2) or ""))
        return day + clock if day and clock else ""

    def value(self, vr: str, value: Any) -> Any:
        """Shift an element's value (one or many) by its VR."""
        move = {"DA": self.da, "TM": self.tm, "DT": self.dt}[vr]
        if value is None or value == "":
            return value
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            return move(str(value))
        return [move(str(v)) for v in value]


def _parse_da(text: str) -> date | None:
    text = text.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _parse_tm(text: str) -> tuple[int, str] | None:
    main, _, frac = text.strip().replace(":", "").partition(".")
    if len(main) not in (2, 4, 6) or not main.isdigit() or (frac and not frac.isdigit()):
        return None
    hh, mm, ss = int(main[0:2]), int(main[2:4] or 0), int(main[4:6] or 0)
    if hh > 23 or mm > 59 or ss > 60:
        return None
    return hh * 3600 + mm * 60 + min(ss, 59), frac[:6]


def _format_tm(secs: int, frac: str) -> str:
    text = f"{secs // 3600:02d}{secs % 3600 // 60:02d}{secs % 60:02d}"
    return f"{text}.{frac}" if frac else text


def dummy(elem: DataElement) -> None:
    """The standard's D action: a value of the right VR that says nothing."""
    if elem.VR == "UI":
        elem.value = "2.25.0"
    elif elem.VR in DUMMY:
        elem.value = DUMMY[elem.VR]
    elif elem.VR in NUMERIC_VRS:
        elem.value = 0
    else:
        elem.value = None


def age_years(text: str) -> int | None:
    text = text.strip().upper()
    if len(text) != 4 or not text[:3].isdigit():
        return None
    n = int(text[:3])
    return {"Y": n, "M": n // 12, "W": n // 52, "D": n // 365}.get(text[3])
