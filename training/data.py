"""The built-in credit-risk data set, and loading a user's own file.

The generator is deterministic: the same ``n_rows`` and ``seed`` give the same frame, byte for
byte, on every machine (numpy's PCG64 stream is stable across platforms).

How the default risk is made (documented here because tests and data scientists rely on it):

    logit = -2.4
            + 1.6 * max(0, (debt_to_income - 22) / 8)       (flat below 22 %, then steep)
            + 0.9 * min(num_delinquencies, 3) * (revolving_utilization > 0.6)     (interaction)
            - 0.9 * log(annual_income / 60,000)
            + 1.3 * (loan_amount / annual_income > 0.35)     (a threshold on a ratio)
            + 0.3 * (term == "60 months")
            + 1.4 * (term == "60 months") * (loan_purpose == "small_business")   (interaction)
            - 0.35 * min(credit_history_years, 15) / 5
            + 1.4 * (revolving_utilization > 0.85)
            + 0.9 * (employment_length_years < 1) * (home_ownership == "RENT")   (interaction)
            + home_ownership and loan_purpose offsets
    defaulted ~ Bernoulli(sigmoid(logit))

The thresholds and the interaction make the target non-linear in the raw columns, so a boosted
model beats a linear one; the base rate is about 15 percent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "defaulted"

NUMERIC_COLUMNS = (
    "annual_income",
    "loan_amount",
    "employment_length_years",
    "debt_to_income",
    "num_delinquencies",
    "credit_history_years",
    "revolving_utilization",
    "num_open_accounts",
)
CATEGORICAL_COLUMNS = ("term", "home_ownership", "loan_purpose")

TERMS = ("36 months", "60 months")
HOME_OWNERSHIP = ("RENT", "MORTGAGE", "OWN", "OTHER")
LOAN_PURPOSES = (
    "debt_consolidation",
    "credit_card",
    "home_improvement",
    "small_business",
    "car",
    "medical",
    "other",
)

# Share of values blanked out per column: real applications arrive with gaps, and the pipeline
# must impute them both in training and in serving.
MISSING_RATES = {
    "employment_length_years": 0.04,
    "debt_to_income": 0.02,
    "revolving_utilization": 0.03,
    "num_open_accounts": 0.01,
}

# The data schema's hard validity bounds (inclusive): what a value can be at all, not what the
# training data happened to hold. Amounts, years and counts are never negative; the revolving
# utilisation is a share of the credit limit (0 to 1, as this data set defines it); the debt
# to income ratio is a percentage with no upper bound (debts can exceed income).
BOUNDS = {
    "annual_income": (0.0, None),
    "loan_amount": (0.0, None),
    "employment_length_years": (0.0, None),
    "debt_to_income": (0.0, None),
    "num_delinquencies": (0.0, None),
    "credit_history_years": (0.0, None),
    "revolving_utilization": (0.0, 1.0),
    "num_open_accounts": (0.0, None),
}
# The columns that may be null: those real applications leave blank (MISSING_RATES), which the
# pipeline imputes. Any other column must hold a value in every request.
NULLABLE_COLUMNS = tuple(MISSING_RATES)
CATEGORIES = {"term": TERMS, "home_ownership": HOME_OWNERSHIP, "loan_purpose": LOAN_PURPOSES}

_PURPOSE_OFFSET = {
    "debt_consolidation": 0.0,
    "credit_card": -0.15,
    "home_improvement": -0.1,
    "small_business": 0.55,
    "car": -0.2,
    "medical": 0.25,
    "other": 0.1,
}
_HOME_OFFSET = {"RENT": 0.25, "MORTGAGE": -0.15, "OWN": -0.05, "OTHER": 0.3}


class DataError(ValueError):
    """The input data cannot be used for training; the message says what to fix."""


def generate_credit_data(n_rows: int = 25_000, seed: int = 42) -> pd.DataFrame:
    """Generate ``n_rows`` synthetic loan applicants with a ``defaulted`` target.

    Args:
        n_rows: number of applicants (rows).
        seed: random seed; equal seeds give equal frames.

    Returns:
        A frame with the columns ``NUMERIC_COLUMNS + CATEGORICAL_COLUMNS + (TARGET,)``.
    """
    rng = np.random.default_rng(seed)
    income = np.round(np.exp(rng.normal(np.log(62_000), 0.55, n_rows)), -2).clip(9_000, 900_000)
    loan = np.round(rng.gamma(2.2, 6_500, n_rows), -2).clip(1_000, 60_000)
    employment = rng.choice(np.arange(0, 41), n_rows, p=_employment_weights()).astype(float)
    dti = np.round(rng.beta(2.2, 7.5, n_rows) * 60, 2)
    delinquencies = rng.poisson(0.35, n_rows).astype(float)
    history = np.round(np.clip(rng.gamma(3.0, 4.0, n_rows), 0.5, 50), 1)
    utilization = np.round(rng.beta(2.0, 2.6, n_rows), 3)
    open_accounts = rng.poisson(9, n_rows).astype(float)
    term = rng.choice(TERMS, n_rows, p=(0.72, 0.28))
    home = rng.choice(HOME_OWNERSHIP, n_rows, p=(0.42, 0.43, 0.13, 0.02))
    purpose = rng.choice(LOAN_PURPOSES, n_rows, p=(0.45, 0.2, 0.08, 0.05, 0.1, 0.05, 0.07))

    long_term = term == "60 months"
    logit = (
        -2.4
        + 1.6 * np.clip((dti - 22) / 8, 0, None)
        + 0.9 * np.minimum(delinquencies, 3) * (utilization > 0.6)
        - 0.9 * np.log(income / 60_000)
        + 1.3 * (loan / income > 0.35)
        + 0.3 * long_term
        + 1.4 * (long_term & (purpose == "small_business"))
        - 0.35 * np.minimum(history, 15) / 5
        + 1.4 * (utilization > 0.85)
        + 0.9 * (employment < 1) * (home == "RENT")
        + np.vectorize(_PURPOSE_OFFSET.get)(purpose)
        + np.vectorize(_HOME_OFFSET.get)(home)
    )
    defaulted = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)

    frame = pd.DataFrame(
        {
            "annual_income": income,
            "loan_amount": loan,
            "employment_length_years": employment,
            "debt_to_income": dti,
            "num_delinquencies": delinquencies,
            "credit_history_years": history,
            "revolving_utilization": utilization,
            "num_open_accounts": open_accounts,
            "term": term,
            "home_ownership": home,
            "loan_purpose": purpose,
            TARGET: defaulted,
        }
    )
    for column, rate in MISSING_RATES.items():
        frame.loc[rng.random(n_rows) < rate, column] = np.nan
    return frame


def _employment_weights() -> np.ndarray:
    years = np.arange(0, 41)
    weights = np.exp(-years / 7.0)
    return weights / weights.sum()


@dataclass(frozen=True)
class TrainingData:
    """A frame ready for training, with the roles of its columns."""

    frame: pd.DataFrame
    target: str
    numeric_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    source: str
    # The data schema behind the input contract (training/contract.py): per column, any of
    # "nullable", "minimum", "maximum", "categories". Empty for a user's file: then the
    # contract is inferred from the training rows, and --contract can override it.
    schema: dict = field(default_factory=dict)


def builtin_data(n_rows: int = 25_000, seed: int = 42) -> TrainingData:
    """The generated data set with its documented column roles."""
    return TrainingData(
        frame=generate_credit_data(n_rows, seed),
        target=TARGET,
        numeric_columns=NUMERIC_COLUMNS,
        categorical_columns=CATEGORICAL_COLUMNS,
        source=f"builtin:credit-risk?rows={n_rows}&seed={seed}",
        schema=builtin_schema(),
    )


def builtin_schema() -> dict:
    """The built-in data set's schema: bounds, nullable columns and categories."""
    schema = {}
    for column in NUMERIC_COLUMNS:
        minimum, maximum = BOUNDS[column]
        schema[column] = {
            "nullable": column in NULLABLE_COLUMNS,
            "minimum": minimum,
            "maximum": maximum,
        }
    for column in CATEGORICAL_COLUMNS:
        schema[column] = {"nullable": False, "categories": list(CATEGORIES[column])}
    return schema


def load_user_data(path: Path, target: str) -> TrainingData:
    """Read a CSV or Parquet file and check that it can train a binary classifier.

    Raises:
        DataError: with a message that names the problem and what to do about it.
    """
    frame = _read_frame(path)
    if frame.empty or len(frame.columns) == 0:
        raise DataError(f"{path} holds no rows; pass a file with a header and data rows")
    if target not in frame.columns:
        raise DataError(
            f"target column '{target}' is not in {path.name}; pass one of its columns with --target"
        )
    frame = frame.dropna(subset=[target])
    classes = frame[target].unique()
    if len(classes) != 2:
        raise DataError(
            f"target column '{target}' must hold exactly two classes, found {len(classes)}; "
            "a binary classifier needs both outcomes in the data"
        )
    frame = frame.assign(**{target: _binary_target(frame[target], target)})

    features = [c for c in frame.columns if c != target]
    if not features:
        raise DataError(f"{path.name} has no feature columns besides '{target}'")
    numeric, categorical = [], []
    for column in features:
        kind = _column_kind(frame[column], column)
        (numeric if kind == "numeric" else categorical).append(column)
    frame[numeric] = frame[numeric].astype("float64")
    for column in categorical:
        frame[column] = frame[column].astype("string").astype(object).where(frame[column].notna())
    return TrainingData(frame, target, tuple(numeric), tuple(categorical), source=str(path))


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; check the path given to --data")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; pass a file with a header and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path} cannot be read ({first_line}); check its format") from None
    raise DataError(f"{path} is neither .csv nor .parquet; convert it to one of them")


def _binary_target(series: pd.Series, target: str) -> pd.Series:
    """Map the two target classes to 0 and 1 (1 = the 'positive', i.e. larger, class)."""
    values = sorted(series.unique(), key=str)
    if set(values) <= {0, 1}:
        return series.astype(int)
    low, high = values
    return (series == high).astype(int)


def _column_kind(series: pd.Series, column: str) -> str:
    """'numeric' or 'categorical'; a mostly-numeric column holding text is an error."""
    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    present = series.dropna()
    as_number = pd.to_numeric(present, errors="coerce")
    bad = as_number.isna()
    if len(present) and bad.mean() < 0.5 and bad.any():
        row = int(bad.idxmax()) + 2  # +1 for the header line, +1 for 1-based line numbers
        raise DataError(
            f"column '{column}' is numeric but holds text in {int(bad.sum())} row(s), the first "
            f"at line {row}; fix or blank those cells"
        )
    if len(present) and not bad.any():
        return "numeric"
    return "categorical"
