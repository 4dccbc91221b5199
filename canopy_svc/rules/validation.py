"""Turns a request body into a typed Struct, or into every problem it has, AJV-shaped.

Two phases:
- shape: the Struct's own annotations (type, length, pattern, enum, minimum, maxItems). The fast path
  is msgspec's decoder; only when it refuses do we walk the body ourselves to list *every* problem
  (msgspec stops at the first), reading the same annotations, so the two cannot disagree on rules.
- meaning: what a type cannot say (E.164, email syntax, calendar sanity, ZIP and state by country,
  all-zero SSN groups, an account listed twice).

Before either, two rules for every body and every field, so no field can forget them:
- nesting: at most MAX_JSON_DEPTH levels of arrays and objects (400), checked before any parser
  recurses (msgspec recurses on the C stack until Python's recursion limit: a RecursionError, a 500).
- text: no NUL in any string (422 `pattern`): PostgreSQL text cannot hold it. Lone surrogates need
  no rule of ours: msgspec refuses them as malformed JSON (400), and tests/test_bad_input.py holds it
  to that for every field.
"""

from __future__ import annotations

import datetime
import itertools
import math
import re
import types
import typing
from collections.abc import Callable, Collection, Mapping
from functools import cache
from typing import Any, TypeVar

import email_validator
import msgspec
import phonenumbers

from canopy_svc.wire.errors import BadRequest, ErrorDetail, InvalidInput, detail
from canopy_svc.wire.fields import (
    EARLIEST_BIRTH_DATE,
    NATIONAL_LENGTHS,
    NO_NUL,
    POSTAL_CODE,
    US_RULES_COUNTRIES,
    US_STATE_CODES,
    US_ZIP,
)
from canopy_svc.wire.models import BusinessController
from canopy_svc.wire.patterns import as_written

T = TypeVar("T", bound=msgspec.Struct)

_INVALID = object()  # marks a value that failed its shape check
# float_hook: a number no float can hold (1e400) becomes inf, which the walk then names as the wrong
# type at its field, instead of a "Number out of range" for the whole body.
_json_decoder = msgspec.json.Decoder(float_hook=float)

# Our bodies nest five levels at most; unknown fields (ignored) get room to spare.
MAX_JSON_DEPTH = 64
_OPEN, _CLOSE = b"\x01", b"\xff"  # +1 and -1 as signed bytes
_BRACKETS_AS_STEPS = bytes.maketrans(b"[{]}", _OPEN * 2 + _CLOSE * 2)
_NOT_BRACKETS_OR_QUOTES = bytes(sorted(set(range(256)) - set(b'[]{}"')))

_JSON_TYPE_NAMES: dict[type, str] = {
    str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object",
    datetime.date: "string", datetime.datetime: "string",
}  # fmt: skip


class BodyDecoder(typing.Generic[T]):
    """One per request type, made at import: msgspec's Decoder plus the error walk."""

    def __init__(self, model: type[T]) -> None:
        self.model = model
        self._decoder = msgspec.json.Decoder(model)

    def decode(self, body: bytes) -> T:
        check_depth(body)
        payload: T | None
        document: dict[str, Any] | None = None
        try:
            payload = self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            reason = str(exc).split(" - at ")[0]
            document, changed = _parse_object(body)
            payload = self._decode_whole_floats(document) if changed else None
        except msgspec.DecodeError:
            _parse_object(body)  # raises the right 400
            raise BadRequest("Request body is not valid JSON") from None
        if payload is not None:
            # JSON can only write a NUL as the escape \u0000, so a body without one needs no walk.
            if b"\\u0000" not in body or not _holds_nul(payload):
                return payload
            reason = "must not contain NUL"
        if document is None:
            document, _ = _parse_object(body)
        problems: list[ErrorDetail] = []
        walk(document, self.model, "", problems)
        if not problems:  # the walk must never be laxer than msgspec; if it is, say what msgspec saw
            problems.append(detail("", "type", {}, reason))
        raise InvalidInput(problems) from None

    def _decode_whole_floats(self, document: dict[str, Any]) -> T | None:
        """The body (as parse_object reads it: its whole floats, 5.0 or 1e3, as integers) decoded, or
        None if it still fails. JSON Schema's integer is any number without a fraction (OpenAPI 3.1
        clients send 5.0, and Canopy's AJV takes it): msgspec alone refuses a float for an int."""
        try:
            return self._decoder.decode(msgspec.json.encode(document))
        except msgspec.ValidationError:
            return None


def parse_object(body: bytes) -> dict[str, Any]:
    """The body as Python objects, whole floats as integers (as the decoder reads them)."""
    check_depth(body)
    return _parse_object(body)[0]


def _parse_object(body: bytes) -> tuple[dict[str, Any], bool]:
    """parse_object, once the depth is checked; and whether any whole float was made an integer."""
    try:
        document = _json_decoder.decode(body)
    except msgspec.DecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadRequest("Request body must be a JSON object")
    if not _MAY_HOLD_A_FLOAT.search(body):
        return document, False
    changed = [False]
    whole: dict[str, Any] = _whole_floats_as_ints(document, changed)
    return whole, changed[0]


# A fraction or an exponent: without either, JSON has no float to make whole.
_MAY_HOLD_A_FLOAT = re.compile(rb"[0-9][.eE]")


def _whole_floats_as_ints(value: Any, changed: list[bool]) -> Any:
    """`value` with every finite float that has no fraction made an int; sets changed[0] if any was."""
    if isinstance(value, float):
        if value.is_integer():  # False for inf and nan
            changed[0] = True
            return int(value)
        return value
    if isinstance(value, list):
        return [_whole_floats_as_ints(item, changed) for item in value]
    if isinstance(value, dict):
        return {key: _whole_floats_as_ints(item, changed) for key, item in value.items()}
    return value


def check_depth(body: bytes) -> None:
    if json_depth_exceeds(body):
        raise BadRequest(f"Request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a parser reading `body` would go more than `limit` arrays and objects deep (or, for
    some malformed bodies, might: those are a 400 either way). Linear: a 1 MiB body of brackets costs
    tens of milliseconds at worst, a few times what parsing it does."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the everyday body
    # Brackets in strings are not structure. Escaped backslashes, then escaped quotes, go first (left to
    # right, as JSON pairs them); then every other quote opens or closes a string (an unterminated
    # one runs to the end, as a parser reads it), so what is outside strings is every other piece.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    pieces = unescaped.translate(None, _NOT_BRACKETS_OR_QUOTES).split(b'"')
    steps = b"".join(pieces[::2]).translate(_BRACKETS_AS_STEPS)  # an opening +1, a closing -1
    if _OPEN * (limit + 1) in steps:
        return True  # the usual attack, "[[[[...", at once
    # The depth is the highest running sum of the steps. Each round of removing "()" pairs takes one
    # level off the deepest point (a balanced body's deepest opening is followed by its closing), and
    # never more than one off any point, so levels removed + what is left's depth is exact for
    # well-formed JSON and never less for malformed. Rounds run in C while they at least halve the
    # text (the wide, shallow everyday body is gone in a few); what is left is summed once.
    levels = 0
    while levels <= limit:
        inner = steps.replace(_OPEN + _CLOSE, b"")
        if len(inner) == len(steps):
            break
        halved = 2 * len(inner) <= len(steps)
        steps, levels = inner, levels + 1
        if not halved:
            break
    return levels + max(itertools.accumulate(memoryview(steps).cast("b"), initial=0)) > limit


def _holds_nul(value: Any) -> bool:
    """Whether a decoded body has a NUL in any string (unknown fields, never decoded, aside)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, msgspec.Struct):
        return any(_holds_nul(getattr(value, name)) for name in value.__struct_fields__)
    if isinstance(value, list | tuple):
        return any(_holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    return False


# --- shape ---------------------------------------------------------------------------------------


@cache
def _struct_fields(model: type[msgspec.Struct]) -> tuple[msgspec.structs.FieldInfo, ...]:
    return msgspec.structs.fields(model)


def walk(value: Any, tp: Any, path: str, problems: list[ErrorDetail]) -> Any:
    """Checks `value` against type `tp`, appending a detail per problem; returns _INVALID on failure."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *metadata = typing.get_args(tp)
        meta = next((m for m in metadata if isinstance(m, msgspec.Meta)), None)
        return _walk_annotated(value, base, meta, path, problems)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not msgspec.UnsetType]
        if value is None and type(None) in members:
            return None
        concrete = [m for m in members if m is not type(None)]
        if len(concrete) > 1:  # scalars of distinct JSON types (an id: a string or an integer)
            fitting = [m for m in concrete if _is_json_type(value, _scalar_base(m))]
            if not fitting:
                names = [_JSON_TYPE_NAMES.get(_scalar_base(m), "string") for m in concrete]
                problems.append(detail(path, "type", {"type": names}, f"must be {','.join(names)}"))
                return _INVALID
            concrete = fitting
        return walk(value, concrete[0], path, problems)
    if origin is typing.Literal:
        allowed = list(typing.get_args(tp))
        if not isinstance(value, str):
            problems.append(detail(path, "type", {"type": "string"}, "must be string"))
            return _INVALID
        if value not in allowed:
            problems.append(
                detail(path, "enum", {"allowedValues": allowed}, "must be equal to one of the allowed values")
            )
            return _INVALID
        return value
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _walk_struct(value, tp, path, problems)
    if origin is list:
        return _walk_annotated(value, tp, None, path, problems)
    return _walk_annotated(value, tp, None, path, problems)


def _scalar_base(tp: Any) -> Any:
    return typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp


def _walk_struct(value: Any, model: type[msgspec.Struct], path: str, problems: list[ErrorDetail]) -> Any:
    if not isinstance(value, dict):
        problems.append(detail(path, "type", {"type": "object"}, "must be object"))
        return _INVALID
    before = len(problems)
    for field in _struct_fields(model):
        name = field.encode_name
        if name not in value:
            if field.required:
                problems.append(
                    detail(path, "required", {"missingProperty": name}, f"must have required property {name}")
                )
            continue
        walk(value[name], field.type, f"{path}/{_pointer_escape(name)}", problems)
    return value if len(problems) == before else _INVALID


def _walk_annotated(value: Any, base: Any, meta: msgspec.Meta | None, path: str, problems: list[ErrorDetail]) -> Any:
    if typing.get_origin(base) is list:
        if not isinstance(value, list):
            problems.append(detail(path, "type", {"type": "array"}, "must be array"))
            return _INVALID
        if meta is not None and meta.max_length is not None and len(value) > meta.max_length:
            problems.append(
                detail(path, "maxItems", {"limit": meta.max_length}, f"must NOT have more than {meta.max_length} items")
            )
            return _INVALID
        (item_type,) = typing.get_args(base)
        before = len(problems)
        for index, item in enumerate(value):
            walk(item, item_type, f"{path}/{index}", problems)
        return value if len(problems) == before else _INVALID
    if typing.get_origin(base) is not None:
        return walk(value, base, path, problems)
    if not _is_json_type(value, base):
        json_type = _JSON_TYPE_NAMES.get(base, "string")
        problems.append(detail(path, "type", {"type": json_type}, f"must be {json_type}"))
        return _INVALID
    if base is datetime.datetime:
        try:
            return msgspec.convert(value, datetime.datetime)
        except msgspec.ValidationError:
            problems.append(detail(path, "format", {"format": "date-time"}, 'must match format "date-time"'))
            return _INVALID
    if base is datetime.date:
        try:
            return datetime.date.fromisoformat(value) if _ISO_DATE.match(value) else _bad_date(path, problems)
        except ValueError:
            return _bad_date(path, problems)
    if isinstance(value, str) and meta is not None:
        if meta.min_length is not None and len(value) < meta.min_length:
            problems.append(
                detail(
                    path,
                    "minLength",
                    {"limit": meta.min_length},
                    f"must NOT have fewer than {meta.min_length} characters",
                )
            )
            return _INVALID
        if meta.max_length is not None and len(value) > meta.max_length:
            problems.append(
                detail(
                    path,
                    "maxLength",
                    {"limit": meta.max_length},
                    f"must NOT have more than {meta.max_length} characters",
                )
            )
            return _INVALID
        if meta.pattern is not None and not _compiled(meta.pattern).search(value):
            written = as_written(meta.pattern)
            problems.append(detail(path, "pattern", {"pattern": written}, f'must match pattern "{written}"'))
            return _INVALID
    if isinstance(value, str) and "\x00" in value:  # every string, whatever its own pattern says
        problems.append(detail(path, "pattern", {"pattern": NO_NUL}, "must not contain NUL (\\u0000)"))
        return _INVALID
    if meta is None:
        return value
    if isinstance(value, int | float) and meta.ge is not None and value < meta.ge:
        problems.append(detail(path, "minimum", {"comparison": ">=", "limit": meta.ge}, f"must be >= {meta.ge}"))
        return _INVALID
    if isinstance(value, int) and meta.le is not None and value > meta.le:
        # Our only upper bounds are the 64-bit columns; "format" keeps to the contract's keyword list.
        problems.append(detail(path, "format", {"format": "int64"}, f"must be a 64-bit integer (<= {meta.le})"))
        return _INVALID
    return value


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _bad_date(path: str, problems: list[ErrorDetail]) -> Any:
    problems.append(detail(path, "format", {"format": "date"}, 'must match format "date"'))
    return _INVALID


def _is_json_type(value: Any, base: Any) -> bool:
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:  # a number no float holds (1e400 read as inf, or a 400-digit integer) msgspec refuses
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        try:
            return math.isfinite(value)
        except OverflowError:  # an integer past the largest float
            return False
    if base is datetime.date or base is datetime.datetime:
        return isinstance(value, str)
    if base is typing.Any:
        return True
    return isinstance(value, base)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _pointer_escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


# --- meaning -------------------------------------------------------------------------------------

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def is_possible_e164(value: str) -> bool:
    """`+`, a country calling code and a national number of a length possible there. Codes are
    prefix-free (ITU), so at most one prefix of the digits is one."""
    if not _E164.fullmatch(value):
        return False
    digits = value[1:]
    code = next((digits[:n] for n in (1, 2, 3) if digits[:n] in NATIONAL_LENGTHS), None)
    return code is not None and len(digits) - len(code) in NATIONAL_LENGTHS[code]


def _phone_problem(value: str, country: str | None) -> str | None:
    if is_possible_e164(value):  # fictional and test ranges (+15555555555) too, as the contract has it
        return None
    if _E164.fullmatch(value):
        return "must be a possible phone number in E.164 format (a national number of a length its country code has)"
    try:
        parsed = phonenumbers.parse(value, country or "US")
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and phonenumbers.is_valid_number(parsed):
        suggestion = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        return f"must be in E.164 format (+, country code, number, no spaces), e.g. {suggestion}"
    return "must be a phone number in E.164 format (+, country code, number, no spaces)"


# The everyday address, which email_validator would accept (tests/test_validation.py checks that on
# thousands of generated ones): answered by one regex instead of its ~30 us of IDNA and Unicode checks,
# a sizeable part of a POST's CPU. Anything else still goes through email_validator.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9_+\-]+(?:\.[A-Za-z0-9_+\-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_SPECIAL_USE_DOMAINS = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)
_SPECIAL_USE_SUFFIXES = tuple(f".{name}" for name in sorted(_SPECIAL_USE_DOMAINS))  # one endswith() for all


def is_plain_email(value: str) -> bool:
    if len(value) > 254 or _PLAIN_EMAIL.fullmatch(value) is None:
        return False
    local, _, domain = value.partition("@")
    domain = domain.lower()
    # "--" anywhere: IDNA's rules for such labels (xn--, R-LDH) are email_validator's business.
    if len(local) > 64 or "--" in domain:
        return False
    return domain not in _SPECIAL_USE_DOMAINS and not domain.endswith(_SPECIAL_USE_SUFFIXES)


def _email_problem(value: str) -> str | None:
    if is_plain_email(value):
        return None
    try:
        email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return 'must match format "email"'
    return None


def _uses_us_rules(country: str | None) -> bool:
    return country is None or country in US_RULES_COUNTRIES


# Matched with fullmatch and [0-9]: Python's `$` admits a final "\n" and its \d other scripts' digits.


def _phone_detail(value: str, country: Any) -> ErrorDetail | None:
    message = _phone_problem(value, country if isinstance(country, str) else None)
    return detail("/phone_number", "format", {"format": "e164"}, message) if message else None


def _email_detail(value: str, country: Any) -> ErrorDetail | None:
    message = _email_problem(value)
    return detail("/email", "format", {"format": "email"}, message) if message else None


def _date_of_birth_detail(value: datetime.date, country: Any) -> ErrorDetail | None:
    if EARLIEST_BIRTH_DATE <= value <= datetime.datetime.now(datetime.UTC).date():
        return None
    return detail("/date_of_birth", "format", {"format": "date"}, "must be a date from 1900-01-01 up to today")


def _zip_detail(value: str, country: Any) -> ErrorDetail | None:
    pattern = US_ZIP if _uses_us_rules(country) else POSTAL_CODE
    if pattern.fullmatch(value):
        return None
    return detail(
        "/address_zip",
        "pattern",
        {"pattern": pattern.pattern},
        "must be a five digit ZIP code or ZIP+4"
        if pattern is US_ZIP
        else "must be a postal code of 1-16 letters, digits, spaces or hyphens",
    )


def _state_detail(value: str, country: Any) -> ErrorDetail | None:
    if not _uses_us_rules(country) or value in US_STATE_CODES:
        return None
    return detail(
        "/address_state", "enum", {"allowedValues": sorted(US_STATE_CODES)}, "must be a USPS state or territory code"
    )


def _ssn_detail(value: str, country: Any) -> ErrorDetail | None:
    digits = value.replace("-", "")
    if digits[:3] != "000" and digits[3:5] != "00" and digits[5:] != "0000":
        return None
    return detail(
        "/ssn", "format", {"format": "ssn"}, "must not have an all-zero group (000-xx-xxxx, xxx-00-xxxx, xxx-xx-0000)"
    )


# Field -> its check, given the value and the (merged) country; in the order the problems are listed.
_MEANING_CHECKS: tuple[tuple[str, Callable[[Any, Any], ErrorDetail | None]], ...] = (
    ("phone_number", _phone_detail),
    ("email", _email_detail),
    ("date_of_birth", _date_of_birth_detail),
    ("address_zip", _zip_detail),
    ("address_state", _state_detail),
    ("ssn", _ssn_detail),
)


def meaning_problems(values: Mapping[str, Any], fields: Collection[str]) -> list[ErrorDetail]:
    """Checks of the customer's fields named in `fields`, against the (merged) `values`."""
    problems: list[ErrorDetail] = []
    country = values.get("address_country_code")
    for name, check in _MEANING_CHECKS:
        if name in fields:
            value = values.get(name)
            if value is not None and value is not _INVALID:
                found = check(value, country)
                if found is not None:
                    problems.append(found)
    return problems


def duplicate_problems(
    items: list[Any] | None, key: str = "account_id", pointer: str = "/assign_to_accounts"
) -> list[ErrorDetail]:
    """A list may not name one account (or customer) twice: AJV's uniqueItems on `key`."""
    seen: dict[str, int] = {}
    for index, item in enumerate(items or ()):
        value = item.get(key) if isinstance(item, dict) else getattr(item, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # an integer id is its decimal string (models.IdRef)
        if not isinstance(value, str):
            continue
        if value in seen:
            return [
                detail(
                    pointer,
                    "uniqueItems",
                    {"i": index, "j": seen[value]},
                    f"must NOT have duplicate items (items ## {seen[value]} and {index} name the same {key})",
                )
            ]
        seen[value] = index
    return []


def _alias_problems(document: Mapping[str, Any]) -> list[ErrorDetail]:
    """`ignore_warnings` (models.CustomerCreate's alias) may not say otherwise than `__ignoreWarnings`:
    which one was meant is not ours to guess when a waiver of the duplicate check hangs on it."""
    dunder, alias = document.get("__ignoreWarnings"), document.get("ignore_warnings")
    if not isinstance(dunder, bool) or not isinstance(alias, bool) or dunder == alias:
        return []
    message = "must be equal to __ignoreWarnings when both are sent"
    return [detail("/ignore_warnings", "enum", {"allowedValues": [dunder]}, message)]


# The meaning checks of the business's controller, at its own path: it is sent whole (an update replaces
# it), so its own country decides its zip and state, at decode time, for a create and an update alike.
CONTROLLER_PATH = "/business_details/controller"
_CONTROLLER_CHECKED = frozenset({"phone_number", "address_zip", "address_state", "ssn"})


def _shaped(document: Mapping[str, Any], model: type[msgspec.Struct], path: str) -> dict[str, Any]:
    """Each field of `model` in `document` as its shape check leaves it (_INVALID when it fails)."""
    shaped: dict[str, Any] = {}
    for field in _struct_fields(model):
        name = field.encode_name
        if name in document:
            scratch: list[ErrorDetail] = []
            checked = walk(document[name], field.type, f"{path}/{name}", scratch)
            shaped[name] = _INVALID if scratch else checked
    return shaped


def controller_problems(values: Mapping[str, Any]) -> list[ErrorDetail]:
    """The controller's meaning checks, given its fields (those that passed their shape check)."""
    fields = {name for name, value in values.items() if value is not _INVALID} & _CONTROLLER_CHECKED
    if values.get("address_country_code") is _INVALID:
        fields -= {"address_zip", "address_state"}
    return [
        msgspec.structs.replace(problem, instancePath=CONTROLLER_PATH + problem.instancePath)
        for problem in meaning_problems(values, fields)
    ]


def _controller_in_document(document: Mapping[str, Any]) -> list[ErrorDetail]:
    business = document.get("business_details")
    controller = business.get("controller") if isinstance(business, dict) else None
    if not isinstance(controller, dict):
        return []
    return controller_problems(_shaped(controller, BusinessController, CONTROLLER_PATH))


def _controller_in_payload(payload: Any) -> list[ErrorDetail]:
    business = getattr(payload, "business_details", None)
    controller = getattr(business, "controller", None)
    if not isinstance(controller, msgspec.Struct):
        return []
    return controller_problems(msgspec.structs.asdict(controller))


def parent_problems(customer_id: Any, parent_id: Any) -> list[ErrorDetail]:
    """A customer is not its own parent (whether the parent exists is the rules' business: a 404)."""
    if not isinstance(parent_id, str | int) or isinstance(parent_id, bool) or str(parent_id) != customer_id:
        return []
    message = "must name another customer of the organization, not the customer itself"
    return [detail("/customer_parent_id", "format", {"format": "another_customer"}, message)]


def decode_customer(body: bytes, decoder: BodyDecoder[T], *, with_meaning: bool) -> T:
    """Decodes a customer body and, `with_meaning`, checks what types cannot say.

    On a shape failure the meaning of the fields that did pass is checked too, so one 422 lists every
    problem. Updates pass with_meaning=False: their meaning depends on the stored row (see
    customers.py), so it is checked after the merge; but when their shape fails, the checks that do not
    need the row (all but zip and state) are listed too. An account named twice, and the controller's
    checks (it is sent whole), are refused always.
    """
    try:
        payload = decoder.decode(body)
    except InvalidInput as exc:
        document = parse_object(body)
        shaped = _shaped(document, decoder.model, "")
        fields = {name for name, value in shaped.items() if value is not _INVALID}
        if not with_meaning or shaped.get("address_country_code") is _INVALID:
            fields -= {"address_zip", "address_state"}  # their rules depend on the (stored) country
        assignments = document.get("assign_to_accounts")
        extra = meaning_problems(shaped, fields)
        extra += _controller_in_document(document)
        if with_meaning:
            extra += parent_problems(shaped.get("customer_id"), shaped.get("customer_parent_id"))
        extra += duplicate_problems(assignments if isinstance(assignments, list) else None)
        extra += _alias_problems(document)
        raise InvalidInput([*exc.details, *extra]) from None
    values = msgspec.structs.asdict(payload)
    problems = _controller_in_payload(payload)
    problems += duplicate_problems(values.get("assign_to_accounts") or None)
    if isinstance(values.get("ignore_warnings_alias"), bool):  # rare: only then is the body read again
        problems += _alias_problems(parse_object(body))
    if with_meaning:
        problems[:0] = meaning_problems(values, values.keys())  # it skips the fields that are None
        problems += parent_problems(values.get("customer_id"), values.get("customer_parent_id"))
    if problems:
        raise InvalidInput(problems)
    return payload
