"""The customer as the customers table keeps it, derived from the wire types (rules/models.py).

Each field of the answer, `Customer`, is the column of its name unless STORED_DIFFERENTLY says how
it is kept; a nested Struct is flattened into a column per field (the controller in
`business_details` is `controller_name_first`, ...; `passport` {number, country} would be
`passport_number`, `passport_country`, but its number is kept as `passport_number_encrypted`).
A request writes the answer's fields that `CustomerUpdate` has too; the ids and timestamps are the
database's. So a new customer field is a column in schema.sql plus the field in the types, and
tests/test_customer_columns.py holds the table, the types and the lists derived here to one another.

The store reads the wire types here, against the usual direction of imports, because they are the
customer's one description; rules/models.py imports nothing from the store, so there is no cycle.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, overload

import msgspec

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Row
from canopy_svc.store.passport import PASSPORT_CONTEXT
from canopy_svc.store.ssn import SSN_CONTEXT, ssn_columns
from canopy_svc.wire.models import Customer, CustomerUpdate

C = TypeVar("C", bound=msgspec.Struct)

# Columns of the table that are no field of the customer: the row id (the paging key and the target
# of foreign keys), the tenant, the words the database derives for search, and the LoanPro face's
# integer id and soft-delete mark (store/loanpro.py reads them).
INTERNAL_COLUMNS = ("id", "org_id", "search_vector", "loanpro_id", "loanpro_deleted_at")


class Storage(Protocol):
    """How one field is kept: its columns, how a value goes into them and how it is read back."""

    @property
    def columns(self) -> tuple[str, ...]: ...

    @property
    def presence(self) -> tuple[str, ...]:
        """Columns that are all null exactly when the value is null."""
        ...

    def write(self, value: Any, cipher: DataCipher, row: dict[str, Any]) -> None: ...

    def expression(self, namespace: dict[str, Any]) -> str:
        """The value as a Python expression over `record` and `cipher`, for the generated reader;
        whatever it refers to besides those goes into `namespace`."""
        ...


@dataclass(frozen=True, slots=True)
class Column:
    """A value kept as it is, in one column."""

    name: str

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.name,)

    @property
    def presence(self) -> tuple[str, ...]:
        return (self.name,)

    def write(self, value: Any, cipher: DataCipher, row: dict[str, Any]) -> None:
        row[self.name] = value

    def expression(self, namespace: dict[str, Any]) -> str:
        return f"record[{self.name!r}]"


@dataclass(frozen=True, slots=True)
class EncryptedSsn:
    """An SSN: only AES-GCM encrypted, beside a keyed hash of its digits for the duplicate check."""

    encrypted: str
    lookup_hash: str

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.encrypted, self.lookup_hash)

    @property
    def presence(self) -> tuple[str, ...]:
        return (self.encrypted,)

    def write(self, value: Any, cipher: DataCipher, row: dict[str, Any]) -> None:
        row[self.encrypted], row[self.lookup_hash] = ssn_columns(value, cipher)

    def expression(self, namespace: dict[str, Any]) -> str:
        namespace["SSN_CONTEXT"] = SSN_CONTEXT
        sealed = f"record[{self.encrypted!r}]"
        return f"(cipher.decrypt({sealed}, context=SSN_CONTEXT) if {sealed} else None)"


@dataclass(frozen=True, slots=True)
class Encrypted:
    """A text only AES-GCM encrypted, in one bytea column, its `context` bound as associated data."""

    encrypted: str
    context: bytes

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.encrypted,)

    @property
    def presence(self) -> tuple[str, ...]:
        return (self.encrypted,)

    def write(self, value: Any, cipher: DataCipher, row: dict[str, Any]) -> None:
        row[self.encrypted] = None if value is None else cipher.encrypt(value, context=self.context)

    def expression(self, namespace: dict[str, Any]) -> str:
        context = f"_context_{self.encrypted}"
        namespace[context] = self.context
        sealed = f"record[{self.encrypted!r}]"
        return f"(cipher.decrypt({sealed}, context={context}) if {sealed} else None)"


@dataclass(frozen=True, slots=True)
class Flattened:
    """A nested Struct, a column per field named `prefix` and the field's name. Without a word in
    STORED_DIFFERENTLY, a nested Struct is Flattened with its own name and `_` as the prefix."""

    prefix: str


@dataclass(frozen=True, slots=True)
class Nested:
    """A Flattened field as derived: its answer type and how each of its fields is kept."""

    model: type[msgspec.Struct]
    fields: tuple[tuple[str, Storage], ...]
    presence: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(column for _, storage in self.fields for column in storage.columns)

    def write(self, value: Any, cipher: DataCipher, row: dict[str, Any]) -> None:
        for name, storage in self.fields:
            storage.write(None if value is None else getattr(value, name), cipher, row)

    def expression(self, namespace: dict[str, Any]) -> str:
        model = f"_model_{len(namespace)}"
        namespace[model] = self.model
        absent = " and ".join(f"record[{column!r}] is None" for column in self.presence)
        return f"(None if {absent} else {model}({_arguments(self.fields, namespace)}))"


def _arguments(fields: tuple[tuple[str, Storage], ...], namespace: dict[str, Any]) -> str:
    return ", ".join(f"{name}={storage.expression(namespace)}" for name, storage in fields)


NOT_STORED = None
StorageSpec = Column | EncryptedSsn | Encrypted | Flattened | None

# The fields kept otherwise than as a column of their name, by path (`business_details.website`).
STORED_DIFFERENTLY: Mapping[str, StorageSpec] = {
    "ssn": EncryptedSsn(encrypted="ssn_encrypted", lookup_hash="ssn_hash"),
    # Its columns are named as its fields (doing_business_as, business_ein, ...), without a prefix.
    "business_details": Flattened(prefix=""),
    # Issue 11's PII: passport numbers, and the controller's SSN (no lookup hash: the duplicate check
    # compares customers' own SSNs only).
    "passport.number": Encrypted(encrypted="passport_number_encrypted", context=PASSPORT_CONTEXT),
    "business_details.controller.ssn": Encrypted(encrypted="controller_ssn_encrypted", context=SSN_CONTEXT),
    "business_details.controller.passport.number": Encrypted(
        encrypted="controller_passport_number_encrypted", context=PASSPORT_CONTEXT
    ),
    "warnings": NOT_STORED,  # the duplicate check's findings, answered once
}


def struct_in(annotation: Any) -> type[msgspec.Struct] | None:
    """The Struct of `Model` or `Model | None`; None for any other type."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    union = typing.get_origin(annotation) in (types.UnionType, typing.Union)
    candidates = typing.get_args(annotation) if union else (annotation,)
    structs = [c for c in candidates if isinstance(c, type) and issubclass(c, msgspec.Struct)]
    return structs[0] if len(structs) == 1 else None


def _derive(
    model: type[msgspec.Struct], path: str, prefix: str, mapping: Mapping[str, StorageSpec], seen: set[str]
) -> tuple[tuple[str, Storage], ...]:
    """How each field of `model` is kept: as the mapping says, else as its type says."""
    fields: list[tuple[str, Storage]] = []
    for info in msgspec.structs.fields(model):
        key = path + info.name
        seen.add(key)
        spec = mapping.get(key)
        if key in mapping and spec is NOT_STORED:
            continue
        nested = struct_in(info.type)
        storage: Storage
        if isinstance(spec, Column | EncryptedSsn | Encrypted):
            storage = spec
        elif nested is None:
            if isinstance(spec, Flattened):
                raise TypeError(f"{key} is mapped as Flattened but is not a Struct")
            storage = Column(prefix + info.name)
        else:
            inner_prefix = spec.prefix if isinstance(spec, Flattened) else f"{prefix}{info.name}_"
            inner = _derive(nested, key + ".", inner_prefix, mapping, seen)
            required = {f.name for f in msgspec.structs.fields(nested) if f.required}
            # Null when its required fields are (with none required, when all of them are).
            presence = tuple(c for name, s in inner if name in required for c in s.presence)
            storage = Nested(nested, inner, presence or tuple(c for _, s in inner for c in s.presence))
        fields.append((info.name, storage))
    return tuple(fields)


class CustomerReader(Protocol):
    """The customer of a row: `(record, cipher)` as the answer type, or `(record, cipher, Model, **extra)`
    as a subclass of it given its own fields."""

    @overload
    def __call__(self, record: Row, cipher: DataCipher, /) -> Customer: ...

    @overload
    def __call__(self, record: Row, cipher: DataCipher, model: type[C], /, **extra: Any) -> C: ...


class CustomerColumns:
    """A customer's columns, and its conversions between fields and a row."""

    __slots__ = ("_writers", "customer", "fields", "read", "writable", "writable_fields")

    def __init__(
        self, answer: type[msgspec.Struct], fields: tuple[tuple[str, Storage], ...], writable_names: frozenset[str]
    ) -> None:
        self.fields = fields  # every stored field of the answer, in answer order
        self.read = tuple(c for _, s in fields for c in s.columns)  # every column answered, in answer order
        self._writers = {name: s for name, s in fields if name in writable_names}
        self.writable_fields = frozenset(self._writers)  # the fields a request writes
        self.writable = tuple(c for s in self._writers.values() for c in s.columns)  # and their columns
        if len(set(self.read)) != len(self.read):
            raise ValueError(f"two customer fields share a column: {self.read}")
        # The reader is generated once, as dataclasses generate __init__: a listing reads every row
        # through it, and as one expression per field, called directly, it costs what the hand-written
        # reader did. Its source holds only field names (identifiers) and column names (as literals).
        namespace: dict[str, Any] = {"_answer": answer}
        arguments = _arguments(fields, namespace)
        source = f"def customer(record, cipher, model=_answer, /, **extra):\n    return model({arguments}, **extra)\n"
        exec(source, namespace)  # noqa: S102
        self.customer: CustomerReader = namespace["customer"]

    def row(self, values: Mapping[str, Any], cipher: DataCipher) -> dict[str, Any]:
        """The columns of the writable fields among `values` (other names are ignored)."""
        row: dict[str, Any] = {}
        for name, value in values.items():
            storage = self._writers.get(name)
            if storage is not None:
                storage.write(value, cipher, row)
        return row


def derive(
    answer: type[msgspec.Struct],
    writable: type[msgspec.Struct],
    mapping: Mapping[str, StorageSpec] = STORED_DIFFERENTLY,
) -> CustomerColumns:
    """The columns of `answer`'s fields; a request writes those `writable` has too."""
    seen: set[str] = set()
    fields = _derive(answer, "", "", mapping, seen)
    if unknown := mapping.keys() - seen:
        raise LookupError(f"STORED_DIFFERENTLY names fields the answer does not have: {sorted(unknown)}")
    return CustomerColumns(answer, fields, frozenset(info.name for info in msgspec.structs.fields(writable)))


STORAGE = derive(Customer, CustomerUpdate)
