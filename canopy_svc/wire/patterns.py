"""Regular expressions for rules a JSON Schema type cannot say (number ranges inside dates, calendars),
for the OpenAPI document: written in the subset ECMA-262 and Python's re read alike ([0-9], not \\d)."""

from __future__ import annotations

import datetime
import re

# End of input, in Python (msgspec) and ECMA (OpenAPI readers) alike: Python's `$` also matches just
# before a final newline, so "123456789\n" would pass a pattern ending in a bare `$`.
END = r"$(?!\n)"


def as_written(pattern: str) -> str:
    """A pattern as the contract writes it, for a 422 detail: END's guard is how Python is told what
    `$` means in JSON Schema, not part of the rule."""
    return pattern.replace(END, "$")


def any_case(text: str) -> str:
    """`text` matched in any letter case: ECMA patterns have no (?i)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in text)


def digits_range(low: int, high: int, width: int) -> str:
    """A regex for the integers low..high written with exactly `width` digits (zero-padded)."""
    if not 0 <= low <= high < 10**width:
        raise ValueError(f"{low}..{high} does not fit {width} digits")
    return _alternation(_range(f"{low:0{width}d}", f"{high:0{width}d}"))


def _range(low: str, high: str) -> list[str]:
    """Regexes whose union is exactly the digit strings from low to high (same length)."""
    if not low:
        return [""]
    if low[0] == high[0]:
        return [low[0] + rest for rest in _range(low[1:], high[1:])]
    rest = len(low) - 1
    parts: list[str] = []
    first, last = int(low[0]), int(high[0])
    if set(low[1:]) <= {"0"}:
        start = first  # the whole first digit's block
    else:
        parts += [low[0] + tail for tail in _range(low[1:], "9" * rest)]
        start = first + 1
    end = last if set(high[1:]) <= {"9"} else last - 1
    if start <= end:
        digit = str(start) if start == end else f"[{start}-{end}]"
        parts.append(digit + ("[0-9]" * rest if rest <= 1 else f"[0-9]{{{rest}}}"))
    if end < last:
        parts += [high[0] + tail for tail in _range("0" * rest, high[1:])]
    return parts


def _alternation(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


MONTH = digits_range(1, 12, 2)
DAY = digits_range(1, 31, 2)
# Month and day of a real date, 29 February aside (see leap_day).
_COMMON_DAYS = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)


def calendar_date(first_year: int, last_year: int) -> str:
    """YYYY-MM-DD, a real calendar date (29 February in leap years only) from first_year to last_year."""
    leap_years = [
        year for year in range(first_year, last_year + 1) if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    ]
    return f"(?:{digits_range(first_year, last_year, 4)}-{_COMMON_DAYS}|{_leap_years(leap_years)}-02-29)"


def _leap_years(years: list[int]) -> str:
    """The leap years given, compactly: whole centuries' runs of multiples of 4, then the rest listed."""
    if not years:
        return "(?!)"  # nothing
    parts: list[str] = []
    listed: list[int] = []
    by_century: dict[int, list[int]] = {}
    for year in years:
        by_century.setdefault(year // 100, []).append(year % 100)
    full_centuries = [
        century for century, rest in by_century.items() if {r for r in rest if r} == set(range(4, 100, 4))
    ]
    if full_centuries:
        # Of a century, the years 04..96 divisible by 4; its 00 year only if it was in `years`.
        low, high = min(full_centuries), max(full_centuries)
        centuries = (
            digits_range(low, high, 2)
            if len(full_centuries) == high - low + 1
            else _alternation([f"{century:02d}" for century in full_centuries])
        )
        parts.append(f"{centuries}(?:0[48]|[2468][048]|[13579][26])")
        listed += [century * 100 for century in full_centuries if 0 in by_century[century]]
    listed += [c * 100 + r for c, rest in by_century.items() if c not in full_centuries for r in rest]
    parts += [f"{year:04d}" for year in sorted(listed)]
    return _alternation(parts)


def dates_from(first: datetime.date, last: datetime.date) -> str:
    """A pattern for YYYY-MM-DD from first to last inclusive, for a field whose format (`date`) says the
    calendar: this only bounds it (so 2000-02-31 matches, and the format refuses it)."""
    if first > last:
        raise ValueError(f"{first} is after {last}")
    # Runs of whole years, then of whole months, then of days; partial units only at either end.
    parts: list[str] = []
    while first <= last:
        if (first.month, first.day) == (1, 1) and datetime.date(first.year, 12, 31) <= last:
            high = last.year if (last.month, last.day) == (12, 31) else last.year - 1
            parts.append(f"{digits_range(first.year, high, 4)}-{MONTH}-{DAY}")
            if high == 9999:
                break
            first = datetime.date(high + 1, 1, 1)
        elif first.day == 1 and _month_end(first) <= last:
            # Through December, or through the last whole month before `last`.
            high = 12 if first.year < last.year else last.month - (last != _month_end(last))
            parts.append(f"{first.year:04d}-{digits_range(first.month, high, 2)}-{DAY}")
            first = _month_end(datetime.date(first.year, high, 1)) + datetime.timedelta(days=1)
        else:
            end = min(_month_end(first), last)
            parts.append(f"{first.year:04d}-{first.month:02d}-{digits_range(first.day, end.day, 2)}")
            first = end + datetime.timedelta(days=1)
    return "^" + _alternation(parts) + END


def _month_end(day: datetime.date) -> datetime.date:
    following = datetime.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return following - datetime.timedelta(days=1)


def rfc3339_datetime(first_year: int, last_year: int) -> str:
    """What msgspec decodes as a datetime (canopy_svc's bodies): a real date, `T`, `t` or a space, hours,
    minutes and seconds (no leap second), an optional fraction, and an optional `Z` or +hh:mm / +hhmm
    offset (none: a naive time, read as UTC)."""
    time = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.][0-9]+)?"
    offset = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?"
    return f"^{calendar_date(first_year, last_year)}[Tt ]{time}{offset}{END}"
