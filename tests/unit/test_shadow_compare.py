"""training/compare.py on known pairs, and the promotion's minimum of shadow decisions."""

import pandas as pd
import pytest

from training.compare import compare
from training.promote import Evaluation, decide


def pairs(champion_labels, challenger_labels, champion_p, challenger_p, versions=("1", "2")):
    n = len(champion_labels)
    return pd.DataFrame(
        {
            "request_id": [f"r{i // 2}" for i in range(n)],
            "row_index": [i % 2 for i in range(n)],
            "version_champion": versions[0],
            "version_challenger": versions[1],
            "label_champion": champion_labels,
            "label_challenger": challenger_labels,
            "probability_champion": champion_p,
            "probability_challenger": challenger_p,
        }
    )


def test_agreement_swap_set_and_correlation():
    frame = pairs(
        [0, 0, 1, 1, 0, 0],
        [0, 1, 1, 0, 0, 0],
        [0.1, 0.2, 0.8, 0.6, 0.05, 0.3],
        [0.12, 0.55, 0.9, 0.4, 0.07, 0.35],
    )
    [result] = compare(frame)
    assert (result.champion_version, result.challenger_version) == ("1", "2")
    assert result.rows == 6 and result.requests == 3
    assert result.agreement == pytest.approx(4 / 6)
    assert result.approved_by_champion_refused_by_challenger == 1
    assert result.refused_by_champion_approved_by_challenger == 1
    expected = pd.Series(frame.probability_champion).corr(frame.probability_challenger)
    assert result.pearson == pytest.approx(expected)
    assert result.spearman is not None and result.spearman > 0.7


def test_one_comparison_per_pair_of_versions():
    frame = pd.concat(
        [pairs([0, 1], [0, 1], [0.1, 0.9], [0.2, 0.8]),
         pairs([1, 1], [0, 0], [0.9, 0.9], [0.1, 0.1], versions=("1", "3"))]
    )  # fmt: skip
    results = {r.challenger_version: r for r in compare(frame)}
    assert results["2"].agreement == 1.0 and results["3"].agreement == 0.0
    assert results["3"].pearson is None  # two rows: no correlation worth a number


def test_nothing_to_compare():
    assert compare(pairs([], [], [], [])) == []


PASSING = Evaluation(
    loads=True, predicts_example=True, candidate_auc=0.80, champion_auc=0.70, shadow_decisions=40
)


@pytest.mark.parametrize(
    ("shadowed", "required", "has_champion", "promote", "reason"),
    [
        (40, 0, True, True, "beats the champion"),
        (40, 50, True, False, "only 40 shadow decisions"),
        (None, 50, True, False, "only 0 shadow decisions"),
        (50, 50, True, True, "beats the champion"),
        # Without a champion there is nothing to shadow: the floor decides.
        (None, 50, False, True, "reaches the floor"),
    ],
)
def test_minimum_of_shadow_decisions(shadowed, required, has_champion, promote, reason):
    evaluation = Evaluation(**{**PASSING.__dict__, "shadow_decisions": shadowed})
    decision = decide(evaluation, has_champion, 0.002, 0.65, False, min_shadow_decisions=required)
    assert decision.promote is promote and reason in decision.reason
