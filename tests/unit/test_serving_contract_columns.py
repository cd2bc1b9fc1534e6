"""check_rows' whole-column pass (`_column_passes`) never changes an answer: for many random
columns, mostly valid with one odd value planted, check_rows gives the same error (code and
message) and leaves the same rows as the value-by-value check alone."""

from __future__ import annotations

import copy
import random

import pytest

import serving.contract as contract_module
from serving.contract import NON_FINITE, InputContract, check_rows

# One column of each kind of rule: bounds, nullable, integer, categories, free text, boolean.
RULES = [
    ("income", "double", False, {"minimum": 0}),
    ("share", "double", True, {"minimum": 0, "maximum": 1}),
    ("count", "long", True, {"minimum": 0}),
    ("term", "string", False, {"categories": ["36", "60"]}),
    ("note", "string", True, {}),
    ("flag", "boolean", True, {}),
]
CONTRACT = InputContract.from_dict(
    {
        "version": 1,
        "unknown_categories": "refuse",
        "columns": [
            {"name": name, "type": kind, "nullable": nullable, **limits}
            for name, kind, nullable, limits in RULES
        ],
    }
)
COLUMNS = [rule.name for rule in CONTRACT.columns]
VALID = {
    "income": lambda r: r.choice([r.uniform(0, 1e6), r.randint(0, 10**6), 0, 0.0]),
    "share": lambda r: r.choice([r.random(), None, 1, 0]),
    "count": lambda r: r.choice([r.randint(0, 40), float(r.randint(0, 40)), None]),
    "term": lambda r: r.choice(["36", "60"]),
    "note": lambda r: r.choice(["x", "a note", None, "ünïcode"]),
    "flag": lambda r: r.choice([True, False, None]),
}
ODD = [
    None, -1, -0.5, 1.5, 2**70, -(2**70), 10**400, 1e308, float("inf"), float("nan"),
    NON_FINITE, True, False, "12", "", "   ", "36 ", "sixty", ["36"], {"a": 1}, 3.5, 2**53 + 1,
]  # fmt: skip


def value_by_value(rows):
    saved = contract_module._WHOLE_COLUMN_ROWS
    contract_module._WHOLE_COLUMN_ROWS = 10**9
    try:
        return check_rows(COLUMNS, rows, CONTRACT)
    finally:
        contract_module._WHOLE_COLUMN_ROWS = saved


def outcome(error):
    return None if error is None else (error.code, error.message)


@pytest.mark.parametrize("seed", range(300))
def test_whole_column_pass_gives_the_value_by_value_answer(seed):
    r = random.Random(seed)
    rows = [[VALID[name](r) for name in COLUMNS] for _ in range(r.choice([16, 40, 200]))]
    for _ in range(r.choice([0, 0, 1, 2])):  # plant odd values (or none: a valid body)
        rows[r.randrange(len(rows))][r.randrange(len(COLUMNS))] = r.choice(ODD)
    fast_rows, slow_rows = copy.deepcopy(rows), copy.deepcopy(rows)
    assert outcome(check_rows(COLUMNS, fast_rows, CONTRACT)) == outcome(value_by_value(slow_rows))
    assert repr(fast_rows) == repr(slow_rows)  # the same blanks made null (repr: NaN != NaN)


def test_valid_columns_take_the_whole_column_pass():
    rows = [[100.0, 0.5, 3, "36", "x", True] for _ in range(50)]
    rules = {rule.name: rule for rule in CONTRACT.columns}
    passes = [
        contract_module._column_passes(rules[name], [row[i] for row in rows], CONTRACT)
        for i, name in enumerate(COLUMNS)
    ]
    assert passes == [True, True, True, True, True, False]  # booleans: value by value


@pytest.mark.parametrize("column", range(len(COLUMNS)))
@pytest.mark.parametrize("odd", ODD, ids=repr)
def test_each_odd_value_in_each_column_gets_the_value_by_value_answer(column, odd):
    rows = [[100.0, 0.5, 3, "36", "x", True] for _ in range(20)]
    rows[7][column] = odd
    fast_rows, slow_rows = copy.deepcopy(rows), copy.deepcopy(rows)
    assert outcome(check_rows(COLUMNS, fast_rows, CONTRACT)) == outcome(value_by_value(slow_rows))
    assert repr(fast_rows) == repr(slow_rows)
