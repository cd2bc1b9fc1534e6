"""The request-body rules, shared with the PL/SQL package and the REST Data Source.

The generated ``credit_risk_api.request_body_from_items`` builds the body of ``POST /invocations``
from APEX page-item strings with exactly these rules, character for character, and the contract
tests build the body with this module. Keep the two in step: the PL/SQL lives in
``apex/templates/credit_risk_api.pkb.j2``.

Rules:
    * strings are JSON strings; ``"`` becomes ``\\"``; a backslash and every non-ASCII character
      become ``\\uXXXX`` (UTF-16, upper-case hex, as Oracle's ``asciistr`` writes them); control
      characters become ``\\u00XX``. The body is pure ASCII, whatever the database character set;
    * an empty item (null, or only spaces) is JSON ``null``; a required text column refuses it;
    * numbers are typed with a dot as the decimal separator; a comma (``1234,5`` or ``72,000``)
      is refused with a message naming the page item; a leading ``+`` and leading zeros are
      dropped so the text is a valid JSON number;
    * reason codes asked for (N above 0) add ``"params":{"reasons":N}`` after the records;
      N = 0 leaves the body exactly as without reasons.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from common.facts import REASONS_PARAM

NUMBER_TYPES = ("double", "float")
INTEGER_TYPES = ("long", "integer")
SUPPORTED_TYPES = (*NUMBER_TYPES, *INTEGER_TYPES, "string", "boolean")

# The same patterns appear in the PL/SQL template; [0-9] because \d is locale-dependent there.
NUMBER_PATTERN = r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?"
INTEGER_PATTERN = r"[+-]?[0-9]+"
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
# Words a PL/SQL record field may not be called; the generator appends "_" to such names.
_RESERVED_WORDS = (
    "access add all alter and any as asc begin between by char check cluster column comment "
    "compress connect create current date decimal default delete desc distinct drop else end "
    "exclusive exists file float for from grant group having identified immediate in increment "
    "index initial insert integer intersect into is level like lock long maxextents minus mode "
    "modify noaudit nocompress not nowait null number of offline on online option or order "
    "pctfree prior public raw rename resource revoke row rowid rownum rows select session set "
    "share size smallint start successful synonym sysdate table then to trigger type uid union "
    "unique update user validate values varchar varchar2 view whenever where with"
)
_RESERVED = frozenset(_RESERVED_WORDS.split())


class BodyError(ValueError):
    """A page item cannot go into the request body; the message names the item and the fix."""


@dataclass(frozen=True)
class Column:
    """One model input (or output) column of the MLflow signature."""

    name: str
    type: str
    required: bool = True
    # From the model's input contract (serving/contract.py), when it has one: whether null is
    # allowed, the allowed text values (refused outside them when `closed`), the hard bounds.
    contract_nullable: bool | None = None
    categories: tuple[str, ...] = ()
    closed: bool = True
    minimum: float | None = None
    maximum: float | None = None

    @property
    def ident(self) -> str:
        """The PL/SQL identifier part: lower case, ``[a-z0-9_]``, not a reserved word."""
        ident = re.sub(r"[^a-z0-9_]", "_", self.name.lower())
        if not _IDENTIFIER.fullmatch(ident):
            ident = f"c_{ident}"
        if ident in _RESERVED:
            ident = f"{ident}_"
        return ident

    @property
    def nullable(self) -> bool:
        """What the contract says; without one, doubles take null as "missing" and other
        types only where the signature says optional."""
        if self.contract_nullable is not None:
            return self.contract_nullable
        return self.type in NUMBER_TYPES or not self.required

    def item(self, page: int) -> str:
        """The APEX page item that holds this column, e.g. ``P1_ANNUAL_INCOME``."""
        return f"P{page}_{self.ident.rstrip('_').upper()}"


def json_string(text: str) -> str:
    """A JSON string literal in pure ASCII, written exactly as the PL/SQL ``json_string`` does."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char == "\\" or code > 127:
            units = char.encode("utf-16-be")
            out.extend(f"\\u{units[i]:02X}{units[i + 1]:02X}" for i in range(0, len(units), 2))
        elif char == '"':
            out.append('\\"')
        elif code < 32:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _is_empty(raw: str | None) -> bool:
    # PL/SQL: trim(x) is null. trim() removes spaces only, and '' is null in Oracle.
    return raw is None or raw.strip(" ") == ""


def value_json(column: Column, raw: str | None, item: str) -> str:
    """The JSON text for one page-item string, or a BodyError naming ``item``."""
    if _is_empty(raw):
        if not column.nullable:
            raise BodyError(f"{item}: a value is required")
        return "null"
    if column.type == "string":
        return json_string(raw)
    value = raw.strip(" ")
    if column.type == "boolean":
        if value.lower() in ("true", "false"):
            return value.lower()
        raise BodyError(f'{item}: "{value}" is not true or false')
    pattern = NUMBER_PATTERN if column.type in NUMBER_TYPES else INTEGER_PATTERN
    if re.fullmatch(pattern, value):
        return re.sub(r"^(-?)0+([0-9])", r"\1\2", value.removeprefix("+"))
    if "," in value:
        raise BodyError(
            f'{item}: "{value}" has a comma; type numbers with a dot as the decimal separator '
            "and no thousands separator, e.g. 1234.5"
        )
    if column.type in INTEGER_TYPES:
        raise BodyError(f'{item}: "{value}" is not a whole number')
    raise BodyError(f'{item}: "{value}" is not a number; type digits with a dot, e.g. 1234.5')


def record_json(columns: Sequence[Column], items: Mapping[str, str | None], page: int = 1) -> str:
    """One ``dataframe_records`` object from page-item strings keyed by column name."""
    fields = [
        json_string(column.name)
        + ":"
        + value_json(column, items.get(column.name), column.item(page))
        for column in columns
    ]
    return "{" + ",".join(fields) + "}"


def request_body(
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, str | None]],
    page: int = 1,
    reasons: int = 0,
) -> str:
    """The body of ``POST /invocations`` for one or many rows, in the dataframe_records form;
    with ``reasons`` above 0 it asks for that many reason codes per row (MLflow ``params``)."""
    records = ",".join(record_json(columns, row, page) for row in rows)
    return '{"dataframe_records":[' + records + "]" + params_json(reasons) + "}"


def params_json(reasons: int) -> str:
    """``,"params":{"reasons":N}`` for N above 0, else nothing (the body as before)."""
    if reasons < 0:
        raise BodyError(f"reasons: {reasons} is below 0")
    return f',"params":{{"{REASONS_PARAM}":{reasons}}}' if reasons else ""
