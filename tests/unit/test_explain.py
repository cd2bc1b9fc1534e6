"""Reason codes: the explainer's contributions are exact, the reasons name the right columns,
and the reason table and the params schema hold their rules (training/explain.py,
training/credit_model.py)."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.credit_model import CreditRiskModel, Explainer
from training.data import DataError, builtin_data
from training.explain import (
    DEFAULT_REASON_TABLE,
    build_explainer,
    check_reason_table,
    dense,
    feature_groups,
    read_reason_table,
    reference_rows,
)
from training.train import Fitted, feature_columns, fit_and_evaluate, split_data

ROWS = 6000


@pytest.fixture(scope="module", params=["hgb", "logreg"])
def trained(request):
    """A fitted pipeline of each kind on the built-in data, with its explainer."""
    data = builtin_data(ROWS, 7)
    splits = split_data(data, 7)
    fitted: Fitted = fit_and_evaluate(data, splits, request.param, 7)
    arrays, reference = build_explainer(fitted.pipeline, splits.x_train, fitted.threshold)
    table = read_reason_table(None, list(feature_columns(data)))
    return fitted, splits, arrays, reference, Explainer(arrays, table)


def _features(fitted, frame):
    return dense(fitted.pipeline[:-1].transform(frame))


def test_contributions_plus_base_value_are_the_log_odds(trained):
    fitted, splits, _, _, explainer = trained
    rows = splits.x_test.head(200)
    features = _features(fitted, rows)
    contributions = explainer.contributions(features)
    margin = fitted.pipeline[-1].decision_function(features)
    assert contributions.shape == (200, len(explainer.columns))
    np.testing.assert_allclose(contributions.sum(axis=1) + explainer.base_value, margin, atol=1e-9)


def test_contributions_are_exact_shapley_values(trained):
    """Brute force over every coalition of the features where x and one reference row
    differ: the classic Shapley formula on the classifier itself."""
    fitted, splits, arrays, _, _ = trained
    one = dict(arrays, reference=arrays["reference"][:1])
    explainer = Explainer(one, read_reason_table(None, explainer_columns(arrays)))
    z = arrays["reference"][0]
    for x in _features(fitted, splits.x_test.head(3)):
        brute = _brute_force_shapley(fitted.pipeline[-1].decision_function, x, z)
        ours = explainer.contributions(x[None, :])[0]
        np.testing.assert_allclose(ours, brute @ explainer.to_columns, atol=1e-9)


def explainer_columns(arrays):
    return [str(c) for c in arrays["columns"]]


def _brute_force_shapley(model, x, z):
    differ = np.flatnonzero(x != z)
    k = len(differ)
    masks = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
    hybrids = np.tile(z, (2**k, 1))
    hybrids[:, differ] = np.where(masks, x[differ], z[differ])
    value = model(hybrids)
    sizes = masks.sum(axis=1)
    phi = np.zeros(len(x))
    for j, feature in enumerate(differ):
        without = np.flatnonzero(masks[:, j] == 0)
        fact = math.factorial
        weight = np.array([fact(s) * fact(k - s - 1) / fact(k) for s in sizes[without]])
        phi[feature] = (weight * (value[without + (1 << j)] - value[without])).sum()
    return phi


def test_moving_the_top_reason_toward_the_reference_lowers_the_risk(trained):
    """For declined test rows: give the top reason's column the values of the reference
    applicants (one copy of the row per reference applicant) and the mean probability of
    default drops below the row's own."""
    fitted, splits, _, reference, explainer = trained
    declined = splits.x_test[fitted.test_probability >= fitted.threshold].head(60)
    assert len(declined) >= 30
    before = fitted.pipeline.predict_proba(declined)[:, 1]
    reasons = explainer.reasons(_features(fitted, declined), 1)
    moved = []
    for position, row_reasons in enumerate(reasons):
        assert row_reasons, "a declined applicant has at least one reason"
        copies = pd.concat([declined.iloc[[position]]] * len(reference), ignore_index=True)
        copies[row_reasons[0]["column"]] = reference[row_reasons[0]["column"]].to_numpy()
        moved.append(copies)
    after = fitted.pipeline.predict_proba(pd.concat(moved))[:, 1]
    after = after.reshape(len(declined), len(reference)).mean(axis=1)
    assert (after < before).all(), f"{int((after >= before).sum())} of {len(before)} rows"


def test_constructed_risky_applicant_names_debt_and_delinquencies(trained):
    fitted, _, _, _, explainer = trained
    # Very high debt-to-income and recent delinquencies (shared with the integration test).
    applicant = pd.DataFrame(
        [json.loads((Path(__file__).parents[1] / "testdata" / "risky-applicant.json").read_text())]
    )
    (reasons,) = explainer.reasons(_features(fitted, applicant), 4)
    named = [reason["column"] for reason in reasons]
    assert named[:2] == ["debt_to_income", "num_delinquencies"] or set(named[:2]) == {
        "debt_to_income",
        "num_delinquencies",
    }, named
    assert reasons[0]["code"] in ("R04", "R05")
    contributions = [reason["contribution"] for reason in reasons]
    assert contributions == sorted(contributions, reverse=True) and min(contributions) > 0


def test_reasons_are_positive_ordered_and_capped(trained):
    fitted, splits, _, _, explainer = trained
    features = _features(fitted, splits.x_test.head(50))
    for wanted in (1, 4, len(explainer.columns)):
        for row in explainer.reasons(features, wanted):
            assert len(row) <= wanted
            values = [reason["contribution"] for reason in row]
            assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
            assert {"code", "column", "text", "contribution"} == set(row[0]) if row else True


def test_one_hot_features_sum_back_to_their_column(trained):
    fitted, _, arrays, _, _ = trained
    group = feature_groups(fitted.pipeline)
    np.testing.assert_array_equal(group, arrays["group"])
    names = fitted.pipeline[:-1].get_feature_names_out()
    columns = list(fitted.pipeline.feature_names_in_)
    assert len(group) == len(names)
    for index, name in zip(group, names, strict=True):
        # numeric__annual_income, categorical__term_36 months: the column is in the name
        assert name.split("__", 1)[1].startswith(columns[index]), (name, columns[index])
    onehot = fitted.pipeline.named_steps["preprocess"].named_transformers_["categorical"][-1]
    for position, column in enumerate(("term", "home_ownership", "loan_purpose")):
        assert (group == columns.index(column)).sum() == onehot._n_features_outs[position]


def test_reference_rows_are_just_approved():
    probability = np.array([0.9, 0.19, 0.05, 0.21, 0.18, 0.1, 0.2])
    np.testing.assert_array_equal(reference_rows(probability, 0.2, rows=3), [1, 4, 5])
    # Nobody approved: the nearest rows overall.
    np.testing.assert_array_equal(reference_rows(np.array([0.5, 0.3, 0.9]), 0.2, rows=1), [1])


def test_explainer_arrays_load_without_pickle(trained, tmp_path):
    from training.explain import save_explainer

    _, _, arrays, _, _ = trained
    save_explainer(arrays, tmp_path / "explainer.npz")
    loaded = np.load(tmp_path / "explainer.npz", allow_pickle=False)
    assert set(loaded.files) == set(arrays)
    assert str(loaded["kind"]) in ("tree", "linear")


# --------------------------------------------------------------------------------- reason table
COLUMNS = list(builtin_data(1000, 1).frame.columns.drop("defaulted"))


def test_default_table_covers_the_builtin_columns_with_unique_codes():
    table = read_reason_table(None, COLUMNS)
    assert list(table) == COLUMNS
    codes = [entry["code"] for entry in table.values()]
    assert len(set(codes)) == len(codes)
    assert table["debt_to_income"]["text"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("term"), "has no entry for columns ['term']"),
        (lambda t: t.update(city={"code": "R99", "text": "x"}), "the data does not have"),
        (lambda t: t["term"].update(code="R01"), "code R01 is used by both"),
        (lambda t: t["term"].update(code="r 9"), "needs a code"),
        (lambda t: t["term"].update(text=""), "needs a one-line text"),
        (lambda t: t["term"].update(text="x" * 201), "over 200 characters"),
    ],
    ids=["missing", "extra", "duplicate-code", "bad-code", "empty-text", "long-text"],
)
def test_bad_reason_tables_are_refused_in_one_line(change, message):
    table = {k: dict(v) for k, v in read_reason_table(None, COLUMNS).items()}
    change(table)
    with pytest.raises(DataError, match="reason table") as caught:
        check_reason_table(table, COLUMNS, "t.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_unreadable_reason_file_is_one_line(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("columns: [unclosed")
    with pytest.raises(DataError, match="cannot be read as YAML"):
        read_reason_table(bad, COLUMNS)
    bad.write_text("- a list\n")
    with pytest.raises(DataError, match="must be"):
        read_reason_table(bad, COLUMNS)
    assert DEFAULT_REASON_TABLE.is_file()


# ------------------------------------------------------------------------------- params schema
@pytest.mark.parametrize("value", [-1, 12, 2.5, "4", True])
def test_bad_reasons_param_is_an_invalid_parameter(trained, value):
    from mlflow.exceptions import MlflowException

    model = CreditRiskModel()
    model.explainer = trained[4]
    with pytest.raises(MlflowException, match="params.reasons") as caught:
        model._reasons_wanted({"reasons": value})
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_no_reasons_by_default(trained):
    model = CreditRiskModel()
    model.explainer = trained[4]
    assert model._reasons_wanted(None) == 0
    assert model._reasons_wanted({}) == 0
    assert model._reasons_wanted({"reasons": 0}) == 0
    assert model._reasons_wanted({"reasons": 11}) == 11


def test_the_models_copy_of_the_param_name_is_the_owners():
    from common.facts import REASONS_PARAM
    from training import credit_model

    assert credit_model.REASONS_PARAM == REASONS_PARAM


def test_train_refuses_a_reason_table_missing_a_column_in_one_line(tmp_path, capsys):
    """Before any registry call: the tracking URI points nowhere, and the answer is still the
    reason table's one line."""
    from training.train import main

    table = DEFAULT_REASON_TABLE.read_text().replace("  term:\n", "  termx:\n")
    path = tmp_path / "reasons.yaml"
    path.write_text(table)
    status = main(
        ["--reasons", str(path), "--rows", "1000", "--tracking-uri", "http://127.0.0.1:9"]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("train: error: reason table ")
    assert "has no entry for columns ['term']" in err
