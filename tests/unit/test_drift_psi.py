"""PSI: deciles of the reference, categories, missing values, the thresholds."""

import numpy as np
import pandas as pd
import pytest

from training.drift import MISSING, column_bins, psi, status

RNG = np.random.default_rng(7)


def test_same_distribution_is_stable_and_a_shift_is_not():
    reference = pd.Series(RNG.normal(50_000, 12_000, 20_000))
    same = pd.Series(RNG.normal(50_000, 12_000, 5_000))
    shifted = pd.Series(RNG.normal(62_000, 12_000, 5_000))
    assert column_bins(reference, same).psi < 0.02
    assert column_bins(reference, shifted).psi > 0.25


def test_numeric_bins_are_the_reference_deciles_plus_missing():
    reference = pd.Series(np.arange(1000, dtype=float))
    bins = column_bins(reference, reference)
    assert len(bins.labels) == 11 and bins.labels[-1] == MISSING
    assert np.allclose(bins.reference[:10], 0.1, atol=0.002) and bins.reference[10] == 0
    assert bins.psi == pytest.approx(0.0)


def test_missing_values_count_as_their_own_bin():
    reference = pd.Series([1.0, 2.0, 3.0, 4.0] * 100)
    live = pd.Series([1.0, 2.0, None, None] * 100)
    bins = column_bins(reference, live)
    assert bins.live[-1] == pytest.approx(0.5)
    assert bins.psi > 0.25


def test_categorical_bins_by_category_with_unseen_ones():
    reference = pd.Series(["RENT", "OWN", "MORTGAGE"] * 100)
    live = pd.Series(["RENT"] * 200 + ["OTHER"] * 100)
    bins = column_bins(reference, live)
    assert set(bins.labels) == {"MORTGAGE", "OWN", "RENT", "OTHER"}
    assert bins.psi > 1


def test_psi_formula_on_a_worked_example():
    # (0.3-0.5)ln(0.3/0.5) + (0.7-0.5)ln(0.7/0.5)
    assert psi([0.5, 0.5], [0.3, 0.7]) == pytest.approx(0.2 * np.log(5 / 3) + 0.2 * np.log(1.4))


@pytest.mark.parametrize(
    ("value", "expected"), [(0.05, "stable"), (0.10, "watch"), (0.2, "watch"), (0.25, "act")]
)
def test_status_thresholds(value, expected):
    assert status(value, 0.10, 0.25) == expected


def test_report_without_inputs_has_the_score_only():
    """The hashed mode keeps no input values: the report is of the score alone."""
    from datetime import UTC, datetime

    from training.monitor import SCORE, compare
    from training.reference import SCORE_COLUMN

    reference = pd.DataFrame(
        {"annual_income": RNG.normal(5e4, 1e4, 2000), SCORE_COLUMN: RNG.beta(2, 8, 2000)}
    )
    live = pd.DataFrame({SCORE_COLUMN: RNG.beta(2, 8, 800), "model_version": "1"})
    now = datetime.now(UTC)
    report = compare("credit-risk", "1", now, now, reference, live)
    assert set(report.psi) == {SCORE} and report.psi[SCORE] < 0.1
    assert report.worst_input() == (None, 0.0)
