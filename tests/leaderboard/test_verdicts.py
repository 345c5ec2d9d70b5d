"""The leaderboard's verdicts against independent computations: every interval and p-value
against scipy's t tests (`ttest_ind(equal_var=False)`, `ttest_rel`) and statsmodels'
`CompareMeans`, every Holm adjustment against `statsmodels.stats.multitest.multipletests`, every
seeds-needed figure against `statsmodels.stats.power`; then selection on the held-out split,
pairing, families and fidelity on real metrics.parquet files.
"""

from __future__ import annotations

import math
import random

import pyarrow.parquet as pq
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from harness.leaderboard import generate
from harness.leaderboard.runs import OPTIONAL_COLUMNS, Run, load_runs
from harness.leaderboard.stats import (
    SEEDS_CAP,
    holm,
    paired_interval,
    seeds_needed_paired,
    seeds_needed_unpaired,
    t_test_power,
    welch_interval,
)
from tests.leaderboard.test_leaderboard import run_id_for, write_run


def paired_power(effect: float, n: int, alpha: float) -> float:
    """statsmodels' two-sided one-sample t power; where it is NaN (scipy's noncentral t far lower
    tail at a large effect), its one-sided power at alpha / 2: the same critical value, the lower
    tail left out (below 1e-9 there)."""
    power = TTestPower().power(effect, n, alpha)
    if math.isnan(power):
        power = TTestPower().power(effect, n, alpha / 2, alternative="larger")
    return float(power)


def samples(seed: int, n: int, loc: float, scale: float) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(loc, scale) for _ in range(n)]


# ------------------------------------------------------------------------------ intervals and tests
@pytest.mark.parametrize("seed", range(6))
def test_welch_matches_scipy_and_statsmodels(seed):
    a, b = samples(seed, 3 + seed, 80.0, 0.5 + seed / 3), samples(100 + seed, 2 + 2 * seed, 79.5, 1.0)
    ours = welch_interval(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    lo, hi = ref.confidence_interval(0.95)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-9) and ours.df == pytest.approx(ref.df, rel=1e-12)
    assert (ours.lo, ours.hi) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    sm_lo, sm_hi = CompareMeans(DescrStatsW(a), DescrStatsW(b)).tconfint_diff(usevar="unequal")
    assert (ours.lo, ours.hi) == (pytest.approx(sm_lo, rel=1e-12), pytest.approx(sm_hi, rel=1e-12))
    assert (ours.status == "significant") == (ref.pvalue < 0.05)


@pytest.mark.parametrize("seed", range(6))
def test_paired_matches_scipy_ttest_rel(seed):
    a = samples(seed, 2 + seed, 80.0, 1.0)
    b = [x - 0.4 + e for x, e in zip(a, samples(50 + seed, len(a), 0.0, 0.3), strict=True)]
    ours = paired_interval(zip(a, b, strict=True))
    ref = sps.ttest_rel(a, b)
    lo, hi = ref.confidence_interval(0.95)
    assert ours.test == "paired" and ours.n_a == len(a) and ours.df == len(a) - 1
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert (ours.lo, ours.hi) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    sm = DescrStatsW([x - y for x, y in zip(a, b, strict=True)]).tconfint_mean()
    assert (ours.lo, ours.hi) == (pytest.approx(sm[0], rel=1e-12), pytest.approx(sm[1], rel=1e-12))


def test_paired_and_welch_edge_cases():
    assert paired_interval([(1.0, 0.0)]).status == "not computable"  # one pair: no spread
    flat = paired_interval([(3.0, 1.0), (4.0, 2.0)])  # differences 2, 2
    assert flat.status == "not computable" and flat.reason == "no variance of the differences"
    assert flat.diff == 2.0 and flat.sd == 0.0
    assert paired_interval([]).reason == "no pairs"
    assert welch_interval([1.0], [2.0, 3.0]).p is None


def test_holm_matches_statsmodels():
    rng = random.Random(7)
    for m in (1, 2, 5, 13):
        ps = [rng.random() ** 3 for _ in range(m)]
        ps[-1] = ps[0]  # a tie
        expected = multipletests(ps, alpha=0.05, method="holm")[1]
        assert holm(ps) == pytest.approx(list(expected), rel=1e-12)
    # not-computable comparisons are not in the family
    ps = [0.01, None, 0.04, 0.03]
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    assert holm(ps) == [
        pytest.approx(expected[0]),
        None,
        pytest.approx(expected[1]),
        pytest.approx(expected[2]),
    ]
    assert holm([]) == []


# ------------------------------------------------------------------------------ seeds needed
@pytest.mark.parametrize("effect", [4.0, 2.0, 1.3, 0.8, 0.5, 0.25, 0.12])
def test_seeds_needed_matches_statsmodels_power(effect):
    one, two = TTestPower(), TTestIndPower()
    for paired, solver, needed in (
        (True, lambda n: one.power(effect, n, 0.05), seeds_needed_paired(effect * 0.7, 0.7)),
        (False, lambda n: two.power(effect, n, 0.05, ratio=1.0), seeds_needed_unpaired(effect * 0.7, 0.7)),
    ):
        n = needed.n
        if n is None:  # only beyond the cap
            assert needed.why == f"more than {SEEDS_CAP}" and solver(SEEDS_CAP) < 0.8
            continue
        assert solver(n) >= 0.8 and (n == 2 or solver(n - 1) < 0.8), (paired, n)
        assert t_test_power(effect, n, paired) == pytest.approx(solver(n), abs=1e-9)


def test_seeds_needed_edge_cases():
    assert seeds_needed_paired(0.0, 1.0).why == "no difference"
    assert seeds_needed_paired(0.5, 0.0).why == "no spread"
    assert seeds_needed_unpaired(0.5, None).why == "fewer than 2 seeds"
    assert seeds_needed_paired(0.001, 5.0).text() == f">{SEEDS_CAP}"
    assert seeds_needed_paired(-9.0, 1.0) == seeds_needed_paired(9.0, 1.0)  # the sign does not matter
    # a large effect where scipy's noncentral t lower tail is NaN (statsmodels' power too)
    assert math.isnan(TTestPower().power(9.08, 4, 0.05))
    n = seeds_needed_paired(9.08, 1.0).n
    assert paired_power(9.08, n, 0.05) >= 0.8 > paired_power(9.08, n - 1, 0.05)


# ------------------------------------------------------------------------------ on the board
CE_TOP1 = {0: [70.0, 80.0, 79.0], 1: [71.0, 81.0, 80.5], 2: [69.0, 79.5, 80.0]}
CE_HOLD = {0: [60.0, 70.0, 69.0], 1: [61.0, 71.0, 71.0], 2: [59.0, 70.0, 68.0]}


def write_holdout_study(runs) -> None:
    """CE, LS (two variants), KD and a method with other seeds, every run with a held-out split."""
    for seed in (0, 1, 2):
        write_run(runs, "ce", "ce", seed, CE_TOP1[seed], holdout=CE_HOLD[seed])
        # LS eps 0.1: higher test top-1, lower held-out; eps 0.2 the other way round
        write_run(
            runs,
            "ls1",
            "label_smoothing",
            seed,
            [70.0, 85.0 + seed, 84.0],
            holdout=[60.0, 62.0, 61.0],
            params={"epsilon": 0.1},
        )
        write_run(
            runs,
            "ls2",
            "label_smoothing",
            seed,
            [70.0, 81.0 + seed / 2, 80.0 + seed],
            holdout=[60.0, 75.0, 70.0],
            params={"epsilon": 0.2},
        )
        teacher = {"teacher": run_id_for("ce", seed), "teacher_arch": "resnet18"}
        fidelity = {"fidelity_agreement": 90.0 + seed, "fidelity_kl": 0.1, "holdout_fidelity_agreement": 88.0}
        fidelity |= {"holdout_fidelity_kl": 0.2, "teacher_holdout_top1": 91.0}
        write_run(
            runs,
            "kd",
            "kd",
            seed,
            [70.0, 82.0 + seed * 0.3, 81.0],
            holdout=[60.0, 72.0, 72.0],
            **teacher,
            **fidelity,
        )
    for seed in (5, 6, 7):  # no seed shared with the baselines: Welch
        write_run(runs, "other", "tfkd_reg", seed, [70.0, 79.0 + seed / 3, 70.0], holdout=[50.0, 65.0, 64.0])


def test_selection_pairing_and_holm_on_the_board(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "board"
    write_holdout_study(runs)
    generate(runs, out)
    table = {r["label"]: r for r in pq.read_table(out / "leaderboard.parquet").to_pylist()}
    ce, kd, other = table["ce"], table["kd"], table["tfkd_reg"]
    # selected epoch: best held-out top-1, the earliest on ties (KD: 72 at epochs 2 and 3 -> 2)
    assert kd["selected_epoch_mean"] == 2.0 and kd["top1_selected_mean"] == pytest.approx(82.3)
    assert ce["selected_epoch_mean"] == 2.0 and ce["top1_selected_mean"] == pytest.approx(
        (80 + 81 + 79.5) / 3
    )
    assert ce["holdout_top1_selected_mean"] == pytest.approx((70 + 71 + 70) / 3)
    assert ce["top1_best_on_test_mean"] is None  # selected on the test split: only without a holdout
    # the LS baseline is the one with the higher held-out top-1 (eps 0.2), not the higher test top-1
    assert kd["baseline_ls"] == "label_smoothing epsilon=0.2"
    ls_sel = {0: 81.0, 1: 81.5, 2: 82.0}
    kd_sel = {s: 82.0 + s * 0.3 for s in (0, 1, 2)}
    ce_sel = {s: CE_TOP1[s][1] for s in (0, 1, 2)}
    # paired test on the selected figures, computed independently
    ref = sps.ttest_rel([kd_sel[s] for s in (0, 1, 2)], [ls_sel[s] for s in (0, 1, 2)])
    assert kd["gain_ls_on"] == "selected" and kd["gain_ls_test"] == "paired" and kd["gain_ls_pairs"] == 3
    assert kd["gain_ls_p"] == pytest.approx(ref.pvalue) and kd["gain_ls_paired_p"] == pytest.approx(
        ref.pvalue
    )
    assert (kd["gain_ls_paired_lo"], kd["gain_ls_paired_hi"]) == pytest.approx(ref.confidence_interval())
    welch = sps.ttest_ind(list(kd_sel.values()), list(ls_sel.values()), equal_var=False)
    assert kd["gain_ls_welch_p"] == pytest.approx(welch.pvalue)
    # the method with other seeds pairs with nothing: Welch
    other_sel = [79.0 + s / 3 for s in (5, 6, 7)]
    ref_other = sps.ttest_ind(other_sel, list(ls_sel.values()), equal_var=False)
    assert other["gain_ls_pairs"] == 0 and other["gain_ls_test"] == "welch"
    assert other["gain_ls_p"] == pytest.approx(ref_other.pvalue)
    lo, hi = ref_other.confidence_interval()
    assert (other["gain_ls_lo"], other["gain_ls_hi"]) == (pytest.approx(lo), pytest.approx(hi))
    # its seeds needed: the two-sample t with equal n per row at the pooled sd
    pooled = math.sqrt((sps.tvar(other_sel) + sps.tvar(list(ls_sel.values()))) / 2)
    effect = abs(other["gain_ls"]) / pooled
    n = other["gain_ls_seeds"]
    assert TTestIndPower().power(effect, n, 0.05) >= 0.8 > TTestIndPower().power(effect, n - 1, 0.05)
    # the LS family: ce, ls eps 0.1, kd, other; Holm over the p-values of the tests used
    family = ["ce", "label_smoothing epsilon=0.1", "kd", "tfkd_reg"]
    ps = [table[label]["gain_ls_p"] for label in family]
    adjusted = multipletests(ps, method="holm")[1]
    for label, q in zip(family, adjusted, strict=True):
        assert table[label]["gain_ls_p_holm"] == pytest.approx(q) and table[label]["gain_ls_family"] == 4
        assert (table[label]["gain_ls_status"] == "significant") == (q < 0.05)
    # the CE family is separate
    ce_family = ["label_smoothing epsilon=0.1", "label_smoothing epsilon=0.2", "kd", "tfkd_reg"]
    adjusted = multipletests([table[label]["gain_ce_p"] for label in ce_family], method="holm")[1]
    assert [table[label]["gain_ce_p_holm"] for label in ce_family] == pytest.approx(list(adjusted))
    assert kd["gain_ce"] == pytest.approx(sum(kd_sel.values()) / 3 - sum(ce_sel.values()) / 3)
    # seeds needed: the paired one-sample t on the differences, against statsmodels
    d = [kd_sel[s] - ls_sel[s] for s in (0, 1, 2)]
    effect = abs(sum(d) / 3) / sps.tstd(d)
    n = kd["gain_ls_seeds"]
    assert paired_power(effect, n, 0.05) >= 0.8 > paired_power(effect, n - 1, 0.05)
    n = kd["gain_ls_seeds_family"]  # at 0.05 / 4, the family's strictest level
    assert paired_power(effect, n, 0.05 / 4) >= 0.8 > paired_power(effect, n - 1, 0.05 / 4)
    margin = 0.3 / sps.tstd(d)
    n = kd["gain_ls_seeds_margin"]
    assert paired_power(margin, n, 0.05) >= 0.8 > paired_power(margin, n - 1, 0.05)
    # fidelity and the teacher's held-out top-1, both splits
    assert (
        kd["fidelity_agreement_mean"] == pytest.approx(91.0) and kd["holdout_fidelity_agreement_mean"] == 88.0
    )
    assert kd["fidelity_kl_mean"] == pytest.approx(0.1) and kd["holdout_fidelity_kl_mean"] == pytest.approx(
        0.2
    )
    assert kd["teacher_holdout_top1_mean"] == 91.0 and ce["fidelity_agreement_mean"] is None
    md = (out / "leaderboard.md").read_text()
    assert "Gains compare top-1 at each run's validation-selected epoch" in md
    assert "4 comparisons with LS; 4 comparisons with CE" in md
    assert "| top-1 selected | sel. epoch | top-1 last | Δ vs LS |" in md  # no test-selected column
    assert "| agreement | KL(t‖s) |" in md and "| 91.00 | 0.100 |" in md
    shown = [label for label in family if table[label]["gain_ls_status"] == "not significant"]
    assert (
        shown == ["ce", "kd", "tfkd_reg"]
        and table["label_smoothing epsilon=0.1"]["gain_ls_status"] == "significant"
    )
    for label in shown:
        assert f"ns, \\~{table[label]['gain_ls_seeds']} seeds to resolve" in md


def test_old_runs_beside_new_ones_compare_on_the_last_epoch(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "board"
    for seed in (0, 1):
        write_run(runs, "ce", "ce", seed, [70.0, 80.0 + seed, 79.0 + 2 * seed], holdout=[60.0, 70.0, 69.0])
        write_run(runs, "old", "kd_old", seed, [70.0, 75.0, 81.0 + seed])  # written before held-out splits
    generate(runs, out)
    table = {r["label"]: r for r in pq.read_table(out / "leaderboard.parquet").to_pylist()}
    old = table["kd_old"]
    assert old["gain_ce_on"] == "last" and old["top1_selected_mean"] is None
    assert old["top1_best_on_test_mean"] == pytest.approx(81.5)
    ref = sps.ttest_rel([81.0, 82.0], [79.0, 81.0])
    assert old["gain_ce_p"] == pytest.approx(ref.pvalue) and old["gain_ce"] == pytest.approx(1.5)
    md = (out / "leaderboard.md").read_text()
    assert "| top-1 selected | sel. epoch | top-1 last | top-1 best on test |" in md
    assert "Gains compare top-1 at the last epoch" in md


def test_runs_without_holdout_columns_still_load(tmp_path):
    """Files written before the held-out split existed lack its columns entirely."""
    runs = tmp_path / "runs"
    folder = write_run(runs, "ce", "ce", 0, [70.0, 71.0])
    path = folder / "metrics.parquet"
    table = pq.read_table(path)
    dropped = [c for c in table.column_names if c.startswith("holdout") or "fidelity" in c]
    pq.write_table(table.drop_columns([*dropped, "teacher_holdout_top1"]), path)
    (loaded,), apart = load_runs(runs)
    assert apart == [] and loaded.last["holdout_top1"] is None
    generate(runs, tmp_path / "board")


# ------------------------------------------------------------------------------ speed
def synthetic_runs(n_settings: int, rows: int, seeds: int, epochs: int) -> list[Run]:
    """In-memory runs with a held-out split: `n_settings` x `rows` x `seeds` runs."""
    rng = random.Random(0)
    runs = []
    for s in range(n_settings):
        for r in range(rows):
            method = ("ce", "label_smoothing")[r] if r < 2 else f"m{r}"
            for seed in range(seeds):
                run_id = f"s{s}-r{r}-s{seed}-00000000"
                base = dict.fromkeys(OPTIONAL_COLUMNS) | {
                    "run_id": run_id,
                    "recipe_name": f"s{s}-r{r}",
                    "method": method,
                    "strategy": method,
                    "strategy_params": "{}",
                    "dataset": "d",
                    "arch": f"a{s}",
                    "seed": seed,
                    "setting_key": f"k{s}",
                    "data_pipeline": "{}",
                    "epochs": epochs,
                    "status": "completed",
                    "eval_split": "test",
                    "train_samples": 100,
                    "epoch_time_s": 1.0,
                }
                rows_ = [
                    base
                    | {"epoch": e + 1, "top1": 70 + e + rng.gauss(0, 1), "holdout_top1": 60 + rng.gauss(0, 1)}
                    for e in range(epochs)
                ]
                runs.append(Run(run_id, tuple(rows_)))
    return runs
