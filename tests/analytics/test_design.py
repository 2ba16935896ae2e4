"""The sigma-rules advisor: QC_SPEC §1.4 bands, N, the reason text, the weakest level decides."""

from __future__ import annotations

import pytest

from qcwx.analytics import design
from qcwx.analytics.sigma import LevelSigma, band_of
from tests import factories as f


def level(ts, level_id: int, sigma: float | None) -> LevelSigma:
    return LevelSigma(ts.id, ts.lab_id, level_id, "水平", "葡萄糖", "mmol/L", 2, 20, 5.0, 1.0,
                      "peer", 5.0, "", 0.5, None, None, None, sigma, None,
                      None if sigma is not None else "缺少")


@pytest.mark.parametrize(("sigma", "codes", "n_text"), [
    (6.0, ["1-3s"], "N=2"), (7.3, ["1-3s"], "N=2"),
    (5.0, ["1-3s", "2-2s", "R-4s"], "N=2"), (5.99, ["1-3s", "2-2s", "R-4s"], "N=2"),
    (4.6, ["1-3s", "2-2s", "R-4s", "4-1s"], "N=4"), (4.0, ["1-3s", "2-2s", "R-4s", "4-1s"], "N=4"),
    (3.99, ["1-3s", "2-2s", "R-4s", "4-1s", "8x"], "N=4（R=2）"),
    (-1.0, ["1-3s", "2-2s", "R-4s", "4-1s", "8x"], "N=4（R=2）")])
def test_bands_of_qc_spec_1_4(world, sigma, codes, n_text):
    ts = world.systems["a"]
    lv1, lv2 = (lv.id for lv in ts.levels)
    advice = design.advise(ts, [level(ts, lv1, sigma + 1), level(ts, lv2, sigma)])
    assert advice.sigma == sigma and advice.codes == codes and advice.n_text == n_text
    assert all(role == "reject" for role in advice.rules.values() if role != "off")


def test_reason_reads_as_the_issue_example(world):
    ts = world.systems["a"]
    lv1, lv2 = (lv.id for lv in ts.levels)
    advice = design.advise(ts, [level(ts, lv1, 4.6), level(ts, lv2, 5.2)])
    assert advice.reason == "σ = 4.6 → 1-3s/2-2s/R-4s/4-1s, N=4"
    assert advice.differs  # the default set has the 1-2s warning and 10x


def test_a_level_without_sigma_gives_no_advice(world):
    ts = world.systems["a"]
    lv1, lv2 = (lv.id for lv in ts.levels)
    advice = design.advise(ts, [level(ts, lv1, 5.0), level(ts, lv2, None)])
    assert advice.rules is None and "缺少" in advice.message


def test_three_levels_are_not_advised(world):
    lot = f.qc_lot(3)
    ts = f.test_system(world.lab_a, f.analyte(), lot)
    advice = design.advise(ts, [level(ts, lv.id, 5.0) for lv in ts.levels])
    assert advice.rules is None and "2 个质控水平" in advice.message


@pytest.mark.parametrize(("sigma", "band"), [(2.99, "lt3"), (3.0, "3to4"), (4.0, "4to5"),
                                             (5.5, "5to6"), (6.0, "ge6"), (-2.0, "lt3")])
def test_sigma_bands_take_the_lower_bound(sigma, band):
    assert band_of(sigma) == band
