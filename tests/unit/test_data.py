import json

import numpy as np
import pandas as pd
import pytest

from training.data import (
    CATEGORICAL_COLUMNS,
    MISSING_RATES,
    NUMERIC_COLUMNS,
    TARGET,
    DataError,
    generate_credit_data,
    load_user_data,
)
from training.pipeline import build_pipeline


def test_generator_is_deterministic():
    first = generate_credit_data(3000, seed=7)
    second = generate_credit_data(3000, seed=7)
    pd.testing.assert_frame_equal(first, second)
    assert not first.equals(generate_credit_data(3000, seed=8))


def test_generator_matches_documented_schema():
    frame = generate_credit_data()
    assert len(frame) >= 20_000
    assert list(frame.columns) == [*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS, TARGET]
    for column in NUMERIC_COLUMNS:
        assert frame[column].dtype == np.float64, column
    for column in CATEGORICAL_COLUMNS:
        assert frame[column].map(type).eq(str).all(), column
    assert set(frame[TARGET].unique()) == {0, 1}
    assert 0.10 <= frame[TARGET].mean() <= 0.20


def test_generator_missing_rates():
    frame = generate_credit_data()
    for column in frame.columns:
        rate = frame[column].isna().mean()
        expected = MISSING_RATES.get(column, 0.0)
        assert abs(rate - expected) < 0.006, (column, rate, expected)


def test_boosted_trees_beat_logistic_regression_on_builtin_data():
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    frame = generate_credit_data()
    x, y = frame.drop(columns=TARGET), frame[TARGET]
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0, stratify=y)
    auc = {}
    for name in ("hgb", "logreg"):
        model = build_pipeline(name, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS).fit(x_train, y_train)
        auc[name] = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert auc["hgb"] > auc["logreg"] + 0.01, auc


@pytest.mark.parametrize("classifier", ["hgb", "logreg"])
def test_pipeline_handles_unseen_categories_and_missing_values(classifier):
    frame = generate_credit_data(3000, seed=1)
    model = build_pipeline(classifier, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS)
    model.fit(frame.drop(columns=TARGET), frame[TARGET])
    rows = frame.drop(columns=TARGET).head(3).copy()
    rows.loc[0, "loan_purpose"] = "space_travel"
    rows.loc[1, list(NUMERIC_COLUMNS)] = np.nan
    rows.loc[2, "home_ownership"] = None
    probability = model.predict_proba(rows)[:, 1]
    assert np.isfinite(probability).all() and ((probability >= 0) & (probability <= 1)).all()


@pytest.mark.parametrize(
    ("content", "target", "message"),
    [
        ("a,b\n1,2\n", "y", "target column 'y' is not in"),
        ("", "y", "is empty"),
        ("a,y\n", "y", "holds no rows"),
        ("a,y\n1,1\n2,1\n3,1\n", "y", "exactly two classes, found 1"),
        ("a,y\n1,0\n2,1\nthree,0\n4,1\n", "y", "column 'a' is numeric but holds text"),
    ],
)
def test_bad_user_data_is_refused_with_a_clear_message(tmp_path, content, target, message):
    path = tmp_path / "data.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_user_data(path, target)


def test_user_data_roles_and_binary_target(tmp_path):
    path = tmp_path / "loans.parquet"
    pd.DataFrame(
        {
            "income": [1.0, 2.0, None, 4.0],
            "city": ["a", "b", "a", None],
            "status": ["good", "bad", "good", "bad"],
        }
    ).to_parquet(path)
    data = load_user_data(path, "status")
    assert data.numeric_columns == ("income",)
    assert data.categorical_columns == ("city",)
    assert set(data.frame["status"]) == {0, 1}


def test_the_builtin_contract_follows_the_data_schema_and_accepts_its_rows():
    from serving.contract import InputContract, check_rows
    from training.contract import build_contract
    from training.data import BOUNDS, CATEGORIES, NULLABLE_COLUMNS, builtin_data

    data = builtin_data(2000, seed=3)
    x = data.frame.drop(columns=TARGET)
    document = build_contract(data, x)
    contract = InputContract.from_dict(document)
    assert contract.names == list(x.columns) and contract.unknown_categories == "refuse"
    rules = {rule.name: rule for rule in contract.columns}
    for column in NUMERIC_COLUMNS:
        assert rules[column].nullable == (column in NULLABLE_COLUMNS)
        assert (rules[column].minimum, rules[column].maximum) == BOUNDS[column]
    for column in CATEGORICAL_COLUMNS:
        assert rules[column].categories == CATEGORIES[column] and not rules[column].nullable
    rows = x.astype(object).where(x.notna(), None).values.tolist()
    assert check_rows(list(x.columns), rows, contract) is None


def test_a_user_files_contract_is_inferred_and_can_be_overridden(tmp_path):
    from training.contract import build_contract, read_overrides

    path = tmp_path / "loans.csv"
    path.write_text("income,city,bad\n1,A,0\n,B,1\n3,A,0\n4,B,1\n")
    data = load_user_data(path, "bad")
    x = data.frame.drop(columns="bad")
    document = build_contract(data, x)
    assert document["columns"] == [
        {"name": "income", "type": "double", "nullable": True},
        {"name": "city", "type": "string", "nullable": False, "categories": ["A", "B"]},
    ]
    overrides_file = tmp_path / "contract.json"
    overrides_file.write_text(
        json.dumps({"unknown_categories": "accept", "columns": {"income": {"minimum": 0}}})
    )
    document = build_contract(data, x, overrides=read_overrides(overrides_file))
    assert document["unknown_categories"] == "accept"
    assert document["columns"][0]["minimum"] == 0
    overrides_file.write_text(json.dumps({"columns": {"income": {"nullable": False}}}))
    with pytest.raises(DataError, match="income.*empty cells"):
        build_contract(data, x, overrides=read_overrides(overrides_file))
    overrides_file.write_text(json.dumps({"columns": {"nope": {"nullable": False}}}))
    with pytest.raises(DataError, match="nope"):
        build_contract(data, x, overrides=read_overrides(overrides_file))
