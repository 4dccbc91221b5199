"""canopy_svc/wire/patterns.py: the regexes that state, in the OpenAPI document, number ranges inside
dates. Each is held to the rule it spells over the whole class (every range, every day near its ends,
every spelling msgspec reads), with no clock: a day is always given."""

from __future__ import annotations

import datetime
import itertools
import random
import re

import msgspec
import pytest

from canopy_svc.rules.accounts import parse_account
from canopy_svc.wire import patterns
from canopy_svc.wire.errors import InvalidInput
from canopy_svc.wire.models import EFFECTIVE_YEARS

ONE_DAY = datetime.timedelta(days=1)


def test_digits_range_is_exactly_the_range() -> None:
    """Every range of two-digit numbers, and sampled ranges of four digits, against every number."""
    for low, high in itertools.combinations_with_replacement(range(100), 2):
        pattern = re.compile(f"^{patterns.digits_range(low, high, 2)}$")
        assert [n for n in range(100) if pattern.match(f"{n:02d}")] == list(range(low, high + 1)), (low, high)
    rng = random.Random(4)
    for _ in range(200):
        low, high = sorted(rng.sample(range(10_000), 2))
        pattern = re.compile(f"^{patterns.digits_range(low, high, 4)}$")
        probes = {0, 9999, low - 1, low, low + 1, high - 1, high, high + 1, *rng.sample(range(10_000), 50)}
        for n in probes - {-1, 10_000}:
            assert bool(pattern.match(f"{n:04d}")) == (low <= n <= high), (low, high, n)
    with pytest.raises(ValueError):
        patterns.digits_range(5, 100, 2)


@pytest.mark.parametrize("years", [(1900, 9998), (1899, 1901), (2000, 2000), (2100, 2100), (1, 9999)])
def test_calendar_date_is_a_real_date_in_the_years(years: tuple[int, int]) -> None:
    first, last = years
    pattern = re.compile(f"^{patterns.calendar_date(first, last)}$")
    for year in {first - 1, first, first + 1, 1900, 2000, 2024, 2100, last - 1, last, last + 1} - {0, 10_000}:
        for month, day in itertools.product(range(0, 14), range(0, 33)):
            text = f"{year:04d}-{month:02d}-{day:02d}"
            try:
                real = datetime.date(year, month, day) is not None
            except ValueError:
                real = False
            assert bool(pattern.match(text)) == (real and first <= year <= last), text


def test_dates_from_is_exactly_the_days_between() -> None:
    """Each pair of ends (fixed and sampled), every day within 40 of either, and days anywhere."""
    rng = random.Random(5)
    on = datetime.date.fromisoformat
    ends = [
        (on("1900-01-01"), on("2024-02-29")),
        (on("1900-01-01"), on("1900-01-01")),
        (on("0001-01-01"), on("9999-12-31")),
        (on("1999-12-31"), on("2000-01-01")),
        (on("2024-02-28"), on("2024-03-01")),
        (on("1900-01-01"), on("2025-12-31")),
    ]
    for _ in range(150):
        first = datetime.date(1900, 1, 1) + datetime.timedelta(days=rng.randrange(60_000))
        span = rng.choice([0, 1, 27, 30, 31, 59, 365, 366, 800, rng.randrange(50_000)])
        ends.append((first, first + datetime.timedelta(days=span)))
    for first, last in ends:
        pattern = re.compile(patterns.dates_from(first, last))
        probes = {
            day + k * ONE_DAY
            for day in (first, last)
            for k in range(-40, 41)
            if datetime.date.min + 40 * ONE_DAY <= day <= datetime.date.max - 40 * ONE_DAY
        }
        probes |= {
            first,
            last,
            *(datetime.date(1, 1, 1) + datetime.timedelta(days=rng.randrange(3_652_058)) for _ in range(100)),
        }
        for day in probes:
            assert bool(pattern.search(day.isoformat())) == (first <= day <= last), (first, last, day)
        assert not pattern.search(last.isoformat() + "\n")
    with pytest.raises(ValueError):
        patterns.dates_from(datetime.date(2000, 1, 2), datetime.date(2000, 1, 1))


def server_takes_effective_at(text: str) -> bool:
    try:
        parse_account(msgspec.json.encode({"product_id": "p", "effective_at": text}))
    except InvalidInput:
        return False
    return True


def test_effective_at_pattern_is_what_the_server_reads() -> None:
    """The document's effective_at pattern against POST /accounts' parse, for every combination of
    dates (the year limits, leap days, impossible ones), times, separators and offsets."""
    first, last = EFFECTIVE_YEARS
    pattern = re.compile(patterns.rfc3339_datetime(first, last))
    dates = [
        f"{first - 1}-12-31",
        f"{first}-01-01",
        f"{first}-02-29",
        "2000-02-29",
        "2023-02-29",
        "2024-02-29",
        "2024-04-31",
        "2024-13-01",
        "2024-00-10",
        "2024-1-01",
        f"{last}-12-31",
        f"{last + 1}-01-01",
        "0001-01-01",
        "12024-01-01",
    ]
    times = [
        "00:00:00",
        "23:59:59",
        "24:00:00",
        "23:60:00",
        "23:59:60",
        "1:00:00",
        "12:00",
        "12:00:00.",
        "12:00:00.1",
        "12:00:00.123456789012",
        "12:00:00,5",
        "120000",
    ]
    separators = ["T", "t", " ", "_", ""]
    offsets = ["", "Z", "z", "+00:00", "-23:59", "+24:00", "+0530", "+05", "+05:3", "-00:00", "+23:60", " Z"]
    taken = 0
    for date, time, separator, offset in itertools.product(dates, times, separators, offsets):
        text = f"{date}{separator}{time}{offset}"
        takes = server_takes_effective_at(text)
        assert (pattern.search(text) is not None) == takes, text
        taken += takes
    assert taken > 300  # not vacuous
    # Years 1 and 9999 with an offset leave datetime's range in UTC: refused, not a 500.
    for text in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-01:00"):
        assert not server_takes_effective_at(text) and not pattern.search(text)
