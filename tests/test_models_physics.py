"""Physics checks on small synthetic dijet tables: weak supervision finds a localized over-density, the
tree conversion is exact, VAE jet combinations behave as their names say, the CLI writes a model folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synthetic_tables import FEATURES, SIGNAL_REGION, auc, dijet_table, single_thread  # noqa: F401

from coffea_ad.cli import main
from coffea_ad.errors import ConfigurationError
from coffea_ad.features.folds import event_fold
from coffea_ad.onnx.export import read_metadata, score_onnx
from coffea_ad.models import (
    ANODE, CATHODE, CURTAINs, FETA, MAF, RANODE, SALAD, CWoLa, Generate, LaCATHODE, Morph, VariationalAutoEncoder,
)
from coffea_ad.models.cathode import sample_kde
from coffea_ad.models.classifiers import TreeEnsemble
from coffea_ad.models.outlier import combine_jet_scores

FAST = {"epochs": 12, "batch_size": 256, "patience": 4, "progress": False}


@pytest.fixture(scope="module")
def injected():
    """12k background events with 150 signal events injected at mjj = 3.5 TeV (S/B ~ 9 % in the SR)."""
    table = dijet_table(12000, 150, seed=21)
    in_sr = ((table["mjj"] >= SIGNAL_REGION[0]) & (table["mjj"] < SIGNAL_REGION[1])).to_numpy()
    return table, in_sr


def test_cwola_ranks_injected_signal_higher_out_of_fold(injected):
    """Cross-trained: every training event is scored by the fold model that did not see it."""
    table, in_sr = injected
    cwola = CWoLa(folds=3, hidden=(32, 32), training=FAST, seed=2).fit(table, FEATURES, signal_region="3300:3700")
    scores = cwola.score(table)
    assert scores.shape == (len(table),) and np.isfinite(scores).all()
    value = auc(scores[in_sr], table["is_signal"].to_numpy()[in_sr])
    print(f"CWoLa out-of-fold AUC in the SR: {value:.3f}")
    assert value > 0.7


def test_cathode_ranks_injected_signal_higher(injected):
    table, in_sr = injected
    cathode = CATHODE(
        transforms=3,
        flow_hidden=(32, 32),
        hidden=(32, 32),
        oversampling=3,
        feature_transforms={"tau21_j1": "logit", "tau21_j2": "logit"},
        training={**FAST, "flow": {"epochs": 15}, "classifier": {"keep_best": 3}},
        seed=3,
        folds=1,  # one model: the test looks at its classifier and its flow samples
    ).fit(table, FEATURES, signal_region=SIGNAL_REGION)
    assert len(cathode.classifiers_[0].members) == 3
    scores = cathode.score(table)
    value = auc(scores[in_sr], table["is_signal"].to_numpy()[in_sr])
    print(f"CATHODE AUC in the SR: {value:.3f}")
    assert value > 0.7
    # the sideband flow interpolates a background that looks like the SR background
    samples = cathode.sample(np.full(4000, 3500.0, np.float32))
    np.testing.assert_array_equal(samples, cathode.sample(np.full(4000, 3500.0, np.float32)))  # reproducible
    background_sr = table.loc[in_sr & ~table["is_signal"].to_numpy(), FEATURES].to_numpy()
    offset = np.abs(np.median(samples, axis=0) - np.median(background_sr, axis=0))
    assert offset.max() < 0.25 * background_sr.std(axis=0).max()


def test_cathode_flow_ensemble_samples_its_kept_epochs_in_equal_shares(injected):
    """``flow`` keep_best > 1: the template comes in equal shares from the flow's best epochs (the CATHODE paper's
    flow ensemble); the first share is the best epoch's own sample, the others differ from it."""
    table, _ = injected
    cathode = CATHODE(
        transforms=2, flow_hidden=(16, 16), hidden=(16, 16), oversampling=1,
        training={**FAST, "epochs": 6, "patience": None, "flow": {"keep_best": 3}}, seed=3, folds=1,
    ).fit(table, FEATURES, signal_region=SIGNAL_REGION)
    data = cathode._read_inputs(table, FEATURES, None, {"signal_region": SIGNAL_REGION})[3]
    flow = cathode._fit_density(cathode.density_, data.x_sb, data.m_sb, "flow", 1, None)
    assert len(flow.best_states) == 3 and flow.best_state_losses == sorted(flow.best_state_losses)
    masses = np.full(3000, 3500.0, np.float32)
    template = cathode._template_samples(flow, masses)
    assert template.shape == (3000, len(FEATURES))
    np.testing.assert_array_equal(template[:1000], cathode.sample(masses[:1000]))  # best epoch, estimator seed
    assert not np.allclose(template[1000:2000], cathode.sample(masses[1000:2000]))
    np.testing.assert_array_equal(cathode.sample(masses), cathode.sample(masses))  # the best epoch is restored


def test_curtains_carries_sideband_events_to_the_signal_region_mass_and_finds_the_signal(injected):
    """A jet mass that grows with mjj: sideband events carried to 3.5 TeV take the signal region's jet mass (the
    transport learned the mass dependence between the sidebands), and data vs carried events finds the W'."""
    table, in_sr = injected
    table = table.assign(mj_min=table["mj_min"] + 0.1 * (table["mjj"] - 3500.0))
    curtains = CURTAINs(
        transforms=3, flow_hidden=(32, 32), hidden=(32, 32), oversampling=3, feature_transforms=LOGIT_TAU21,
        training={**FAST, "flow": {"epochs": 15}, "classifier": {"keep_best": 3}}, seed=3, folds=1,
    ).fit(table, FEATURES, signal_region=SIGNAL_REGION)
    assert set(curtains.history_) == {"flow", "transport", "classifier"}
    low = (table["mjj"] >= 3000.0) & (table["mjj"] < 3200.0)
    background_sr = table[in_sr & ~table["is_signal"]]
    carried = curtains.carry(table.loc[low, FEATURES].to_numpy(np.float32), table.loc[low, "mjj"].to_numpy(),
                             np.full(int(low.sum()), 3500.0))
    column = FEATURES.index("mj_min")
    before = abs(np.median(table.loc[low, "mj_min"]) - np.median(background_sr["mj_min"]))
    after = abs(np.median(carried[:, column]) - np.median(background_sr["mj_min"]))
    value = auc(curtains.score(table)[in_sr], table["is_signal"].to_numpy()[in_sr])
    print(f"CURTAINs AUC in the SR: {value:.3f} (mj_min median offset {before:.1f} -> {after:.1f} GeV)")
    assert before > 25.0 and after < 0.4 * before
    assert value > 0.7


def test_feta_moves_mismodelled_simulation_onto_data_and_finds_the_signal(injected):
    table, in_sr = injected
    simulation = dijet_table(12000, 0, seed=24, mismodelling=0.08)
    feta = FETA(
        transforms=3, flow_hidden=(32, 32), hidden=(32, 32),
        training={**FAST, "flow": {"epochs": 15}, "classifier": {"keep_best": 3}}, seed=6, folds=1,
    ).fit(table, FEATURES, simulation=simulation, signal_region=SIGNAL_REGION)
    sim_sr = simulation[(simulation["mjj"] >= SIGNAL_REGION[0]) & (simulation["mjj"] < SIGNAL_REGION[1])]
    background_sr = table[in_sr & ~table["is_signal"]]
    moved, _ = feta.background_template(sim_sr)
    column = FEATURES.index("tau21_j1")  # mismodelled by -0.08 everywhere; the transport learned it in the sidebands
    before = abs(np.median(sim_sr["tau21_j1"]) - np.median(background_sr["tau21_j1"]))
    after = abs(np.median(moved[:, column]) - np.median(background_sr["tau21_j1"]))
    value = auc(feta.score(table)[in_sr], table["is_signal"].to_numpy()[in_sr])
    print(f"FETA AUC in the SR: {value:.3f} (tau21 median offset {before:.3f} -> {after:.3f})")
    assert after < 0.5 * before
    assert value > 0.7


LOGIT_TAU21 = {"tau21_j1": "logit", "tau21_j2": "logit"}


@pytest.mark.parametrize(
    "estimator",
    [
        LaCATHODE(transforms=3, flow_hidden=(32, 32), hidden=(32, 32), oversampling=3, feature_transforms=LOGIT_TAU21,
                  training={**FAST, "flow": {"epochs": 15}, "classifier": {"keep_best": 3}}, seed=3, folds=1),
        ANODE(
            transforms=3, flow_hidden=(32, 32), feature_transforms=LOGIT_TAU21, training={**FAST, "epochs": 15}, seed=3,
            folds=1,
        ),
        RANODE(
            transforms=3, flow_hidden=(32, 32), feature_transforms=LOGIT_TAU21, training={**FAST, "epochs": 15}, seed=3,
            folds=1,
        ),
    ],
    ids=["lacathode", "anode", "ranode"],
)
def test_density_methods_rank_injected_signal_higher(estimator, injected):
    table, in_sr = injected
    scores = estimator.fit(table, FEATURES, signal_region=SIGNAL_REGION).score(table)
    value = auc(scores[in_sr], table["is_signal"].to_numpy()[in_sr])
    print(f"{estimator.method} AUC in the SR: {value:.3f}")
    assert value > 0.7


def test_maf_outlier_score_prefers_the_signal_in_low_density_regions(injected):
    table, in_sr = injected
    flow = MAF(transforms=3, feature_transforms=LOGIT_TAU21, training={**FAST, "epochs": 15})
    scores = flow.fit(table, FEATURES).score(table)
    value = auc(scores[in_sr], table["is_signal"].to_numpy()[in_sr])
    print(f"MAF (-log p) AUC in the SR: {value:.3f}")
    assert value > 0.7


def test_cwola_without_signal_finds_nothing_out_of_fold():
    """No leakage: on pure background, out-of-fold scores do not separate SR from SB (in-fold would)."""
    table = dijet_table(6000, 0, seed=22)
    in_sr = ((table["mjj"] >= SIGNAL_REGION[0]) & (table["mjj"] < SIGNAL_REGION[1])).to_numpy()
    cwola = CWoLa(folds=3, hidden=(32, 32), training=FAST, seed=2).fit(table, FEATURES, signal_region="3300:3700")
    assert abs(auc(cwola.score(table), in_sr) - 0.5) < 0.06


def test_salad_ranks_injected_signal_higher_despite_mismodelled_simulation(injected):
    table, in_sr = injected
    simulation = dijet_table(12000, 0, seed=23, mismodelling=0.05)
    salad = SALAD(hidden=(32, 32), training=FAST, seed=4, folds=1)
    salad.fit(table, FEATURES, simulation=simulation, signal_region=SIGNAL_REGION)
    weights = salad.weights(np.concatenate([simulation[FEATURES].to_numpy(), simulation[["mjj"]].to_numpy()], axis=1))
    assert 0.5 < weights.mean() < 2.0
    value = auc(salad.score(table)[in_sr], table["is_signal"].to_numpy()[in_sr])
    print(f"SALAD AUC in the SR: {value:.3f}")
    assert value > 0.7


def test_generate_ranks_injected_signal_higher_in_the_ht_met_signal_region(injected):
    table, _ = injected
    in_sr = table["high_ht_met"].to_numpy()
    generate = Generate(
        transforms=3, flow_hidden=(32, 32), hidden=(32, 32), oversampling=3,
        training={**FAST, "flow": {"epochs": 15}, "classifier": {"keep_best": 3}}, seed=5, folds=1,
    ).fit(table, FEATURES, signal_flag="high_ht_met", context=["ht", "met"])
    value = auc(generate.score(table)[in_sr], table["is_signal"].to_numpy()[in_sr])
    print(f"Generate AUC in the HT/MET signal region: {value:.3f}")
    assert value > 0.7


def test_morph_moves_mismodelled_simulation_onto_data_and_finds_the_signal(injected):
    table, _ = injected
    in_sr = table["high_ht_met"].to_numpy()
    simulation = dijet_table(12000, 0, seed=24, mismodelling=0.08)
    morph = Morph(
        transforms=3, flow_hidden=(32, 32), hidden=(32, 32),
        training={**FAST, "flow": {"epochs": 15}, "classifier": {"keep_best": 3}}, seed=6, folds=1,
    ).fit(table, FEATURES, simulation=simulation, signal_flag="high_ht_met", context=["ht", "met"])
    simulated_cr = simulation[~simulation["high_ht_met"]]
    data_cr = table[~table["high_ht_met"]]
    moved, weights = morph.background_template(simulated_cr, None)
    assert len(moved) == len(simulated_cr) and (weights == 1).all()
    column = FEATURES.index("tau21_j1")  # mismodelled by -0.08: the morph must undo most of the shift
    before = abs(np.median(simulated_cr["tau21_j1"]) - np.median(data_cr["tau21_j1"]))
    after = abs(np.median(moved[:, column]) - np.median(data_cr["tau21_j1"]))
    assert after < 0.5 * before
    value = auc(morph.score(table)[in_sr], table["is_signal"].to_numpy()[in_sr])
    print(f"Morph AUC in the HT/MET signal region: {value:.3f} (tau21 median offset {before:.3f} -> {after:.3f})")
    assert value > 0.7


def test_kde_samples_stay_in_the_signal_region():
    values = np.random.default_rng(0).uniform(3300.0, 3700.0, 500)
    draws = sample_kde(values, 2000, 3300.0, 3700.0, np.random.default_rng(1))
    assert draws.shape == (2000,) and draws.min() >= 3300.0 and draws.max() < 3700.0
    assert abs(draws.mean() - values.mean()) < 15.0


def test_tree_ensemble_equals_scikit_learn():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 3)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] + 0.3 * rng.normal(size=3000) > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(x, y)
    fresh = rng.normal(size=(1000, 3)).astype(np.float32)
    logits = TreeEnsemble.from_sklearn(model)(torch.as_tensor(fresh)).squeeze(-1).double().numpy()
    np.testing.assert_allclose(logits, model.decision_function(fresh), rtol=1e-6, atol=1e-6)


def test_vae_jet_combinations_follow_their_names():
    table = dijet_table(2000, 0, seed=5)
    columns = ["mj_min", "tau21_j1", "delta_mj", "tau21_j2"]
    scores = {}
    for combine in ("min", "max", "sum", "product"):
        vae = VariationalAutoEncoder(jets=2, combine=combine, training={"epochs": 2, "progress": False}, seed=1)
        scores[combine] = vae.fit(table, columns).score(table)
        per_jet = vae.score_jets(table)
        np.testing.assert_allclose(combine_jet_scores(per_jet, combine), scores[combine], rtol=1e-5)
    with pytest.raises(ConfigurationError, match="combine must be one of min, max, sum, product"):
        combine_jet_scores(per_jet, "mean")
    np.testing.assert_allclose(scores["min"], per_jet.min(axis=1), rtol=1e-5)
    np.testing.assert_allclose(scores["max"], per_jet.max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(scores["sum"], per_jet.sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(scores["product"], per_jet.prod(axis=1), rtol=1e-5)
    kl_only = VariationalAutoEncoder(jets=2, score_terms="kl", training={"epochs": 2, "progress": False})
    kl_only.fit(table, columns)
    assert (kl_only.score(table) >= 0).all()


def test_cli_train_writes_model_and_summary(tmp_path, capsys):
    path = tmp_path / "features.parquet"
    table = dijet_table(2000, 50, seed=6)
    table.to_parquet(path)
    out = tmp_path / "model"
    arguments = ["train", "cwola", str(path), "-o", str(out)]  # the default signal region: 3300-3700 GeV
    options = ["--features", ",".join(FEATURES), "--epochs", "2", "--seed", "3", "--device", "cpu", "--no-progress"]
    status = main(arguments + options)
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "cwola" and summary["features"] == FEATURES
    assert summary["inputs"]["signal_region"] == [3300.0, 3700.0] and summary["inputs"]["mass"] == "mjj"
    assert summary["onnx"]["max_abs_diff_over_max_abs_score"] < 1e-5
    assert summary["folds"] == 5 and len(summary["fold_rows"]) == 5  # CWoLa's default: cross-trained
    assert len(summary["history"]["fold0/classifier"]["validation_loss"]) == 2
    metadata = read_metadata(out / "model.onnx")
    assert metadata.feature_names == FEATURES and metadata.n_folds == 5
    fold = event_fold(table.run, table.luminosityBlock, table.event, 5)
    assert score_onnx(out / "model.onnx", table[FEATURES].to_numpy(np.float32), fold).shape == (len(table),)
    assert not list(out.glob(".*tmp"))
    assert main(["train", "iad", str(path), "-o", str(out)]) == 1
    assert "method 'iad' needs background (--background)" in capsys.readouterr().err
    assert main(["train", "kmeans", str(path), "-o", str(out)]) == 1
    valid = (
        "valid methods: autoencoder, vae, realnvp, maf, cwola, bdt, cathode, lacathode, curtains, anode, ranode, iad, "
        "supervised, salad, reweight, generate, morph, feta"
    )
    assert valid in capsys.readouterr().err
