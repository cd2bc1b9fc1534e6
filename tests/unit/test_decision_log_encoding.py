"""How the decision log's writer turns rows into JSON: orjson for the batch path's rows, with
the same content as the canonical encoder (`_dumps`), keys sorted, NaN and infinities as null,
numpy scalars as numbers, a fallback for what orjson refuses, and a RowView encoded once even
when the shadow's challenger entry holds the same rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from serving.decisions.log import _dumps, _json_lines
from serving.evidence import RowView

COLUMNS = ["term", "annual_income", "num_delinquencies", "home_ownership", "note"]
DATA = [
    ["36 months", 62000.0, 0, "RENT", "zoë ✓"],
    ["60 months", float("nan"), np.int64(3), None, 'a "quoted" \\ text'],
    ["36 months", float("inf"), np.float64(0.1), "OWN", 2**70],  # past 64 bits: the fallback
    ["60 months", 1e20, -0.0, "MORTGAGE", [1, 2]],
]


def test_row_view_lines_hold_what_the_canonical_encoder_writes():
    lines = _json_lines(RowView(COLUMNS, DATA))
    assert len(lines) == len(DATA)
    for line, row in zip(lines, DATA, strict=True):
        assert json.loads(line) == json.loads(_dumps(dict(zip(COLUMNS, row, strict=True))))
        assert list(json.loads(line)) == sorted(COLUMNS), "keys sorted, as the canonical form"
    assert json.loads(lines[1])["annual_income"] is None
    assert json.loads(lines[2])["annual_income"] is None
    assert json.loads(lines[2])["note"] == 2**70
    assert json.loads(lines[0])["note"] == "zoë ✓"


def test_mappings_are_encoded_like_row_views():
    mappings = [dict(zip(COLUMNS, row, strict=True)) for row in DATA]
    assert _json_lines(mappings) == _json_lines(RowView(COLUMNS, DATA))


def test_a_row_view_is_encoded_once():
    rows = RowView(COLUMNS, DATA[:1])
    first = _json_lines(rows)
    rows.data[0][1] = 1.0  # a second encoding would see this
    assert _json_lines(rows) is first


def test_a_data_frame_keeps_pandas_encoding():
    frame = pd.DataFrame({"probability": [0.25, float("nan")], "label": [0, 1]})
    assert [json.loads(line) for line in _json_lines(frame)] == [
        {"probability": 0.25, "label": 0},
        {"probability": None, "label": 1},
    ]
    assert _json_lines(frame.iloc[:0]) == []
