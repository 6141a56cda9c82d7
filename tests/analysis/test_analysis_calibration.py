"""Fast calibration: the report's primary tests hold their type-I error on simulated null studies
in the platform's (matched) layout, and the fixed-image analysis fails the same check.

Smaller studies (48 participants × 64 sources: fewer clusters make the check harder, not easier) and
a wide band keep this to seconds. The measurement (500 studies per generator, two generators,
band 3.1–6.9 %, power beside clmm) is `python -m benchmarks --only calibration --tier full`.
"""
import pytest

from analysis.calibration import negative_control, run_replicates, summarise
from analysis.simulate import NULL

STUDIES = 100
BAND = (0.01, 0.10)
NEGATIVE_CONTROL_STUDIES = 40  # its rejection rate is ~0.4: 40 studies tell it from 0.10 beyond doubt


@pytest.fixture(scope="module")
def matched_null():
    return summarise(run_replicates(STUDIES, "matched", 48, 64, NULL, workers=2))


def test_primary_tests_reject_a_true_null_at_the_nominal_rate(matched_null):
    primary = matched_null[matched_null["kind"] == "primary"]
    assert len(primary) == 6 and (primary["studies"] == STUDIES).all()
    for row in primary.itertuples():
        assert BAND[0] <= row.rejection_rate <= BAND[1], f"{row.test}: {row.rejection_rate:.3f} outside {BAND}"
        assert row.ks_uniform_p > 0.001, f"{row.test}: null p-values are not uniform (KS p = {row.ks_uniform_p:.2g})"


def test_negative_control_participant_aggregated_paired_t_fails_the_band():
    # Nested layout (each image made against one model): averaging over images per participant
    # treats the images as fixed, and the paired t rejects a true null far too often.
    for outcome, rate in negative_control(NEGATIVE_CONTROL_STUDIES, "nested").items():
        assert rate > BAND[1], f"negative control ({outcome}) rejected {rate:.2f}: the generator lost its image variance"
