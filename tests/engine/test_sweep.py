"""`engine sweep`'s selection rules on hand-made rows: which λ each rule takes, and what it refuses."""
from __future__ import annotations

import re

import pytest

from engine.config import ConfigError
from engine.sweep import choose, parse_values, score_column, swept_key


def rows(*table: tuple[float, float, float]) -> list[dict]:
    """(λ, clean drop below the normal model, transfer accuracy) per swept λ."""
    return [{"field": "gradreg.lambda", "value": lam, "val_clean": 0.97 - drop, "val_clean_drop": drop, "val_fgsm_transfer_eps0.3": robust}
            for lam, drop, robust in table]


SWEPT = rows((100, 0.005, 0.63), (178, 0.012, 0.74), (316, 0.021, 0.72), (562, 0.030, 0.70), (1000, 0.066, 0.73))


def test_largest_takes_the_largest_lambda_within_the_drop_not_the_most_robust():
    assert choose(SWEPT, 0.03, "largest")["value"] == 562  # a drop of exactly 3 points is within 3 points
    assert choose(SWEPT, 0.02, "largest")["value"] == 178
    assert choose(SWEPT, 0.03, "most-robust")["value"] == 178  # the default rule on the same rows
    # Not the largest λ of a contiguous run: an eligible λ beyond an ineligible one is still taken.
    assert choose(rows((10, 0.0, 0.5), (31, 0.04, 0.6), (100, 0.01, 0.4)), 0.03, "largest")["value"] == 100


@pytest.mark.parametrize("max_drop, pick, message", [
    (3, "largest", "--max-drop is a fraction of accuracy between 0 and 1 (0.03 = 3 points), got 3"),
    (-0.01, "largest", "got -0.01"),
    (0.03, "smallest", "--pick is one of most-robust, largest, not 'smallest'"),
    (0.001, "largest", "no value kept clean validation accuracy within 0.1 points of the normal model's"),
])
def test_a_rule_that_cannot_be_meant_is_refused(max_drop, pick, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        choose(SWEPT[1:], max_drop, pick)


def test_each_regime_sweeps_its_own_field_or_the_one_asked_for():
    assert swept_key("gradreg") == "gradreg.lambda" and swept_key("trades") == "trades.beta"
    assert swept_key("pgd-adversarial") == "pgd-adversarial.eps"
    assert swept_key("pgd-adversarial", "epoch_factor") == "pgd-adversarial.epoch_factor"
    with pytest.raises(ConfigError, match=re.escape("pgd-adversarial has no field 'lambda'; its fields: eps, step, steps, epoch_factor")):
        swept_key("pgd-adversarial", "lambda")
    with pytest.raises(ConfigError, match="normal has no field to sweep"):
        swept_key("normal")


@pytest.mark.parametrize("spec, message", [("1,two", "--values expects numbers separated by commas"),
                                           ("1,2,1", "--values '1,2,1' repeats a value")])
def test_a_bad_value_list_is_refused(spec, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_values(spec)


def test_each_score_fills_its_own_column_and_the_choice_reads_it():
    assert parse_values("0.3,0.35") == [0.3, 0.35]
    assert score_column("white-box-pgd", 0.3) == "val_pgd40_eps0.3"
    with pytest.raises(ConfigError, match="--score is one of transfer-fgsm, white-box-pgd, not 'pgd'"):
        score_column("pgd", 0.3)
    pgd_rows = [{"value": v, "val_clean_drop": d, "val_pgd40_eps0.3": r} for v, d, r in ((1, 0.01, 0.6), (2, 0.02, 0.8), (3, 0.05, 0.9))]
    assert choose(pgd_rows, 0.03, "most-robust", "val_pgd40_eps0.3")["value"] == 2
