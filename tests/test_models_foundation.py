"""The estimator contract: inputs, incomplete rows, training settings, determinism, early stopping, checkpoints,
save/load, devices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synthetic_tables import FEATURES, dijet_table, single_thread  # noqa: F401  (autouse fixture)

from coffea_ad.errors import CoffeaADError, ConfigurationError, InputFileError
from coffea_ad.features import FEATURES as REGISTRY
from coffea_ad.models import CATHODE, METHODS, AutoEncoder, Estimator, MAF, NotFittedError, Training, get_estimator
from coffea_ad.models.base import INPUT_OPTIONS
from coffea_ad.models.data import parse_signal_region, resonant_split
from coffea_ad.models.preprocessing import Preprocessor
from coffea_ad.models.training import resolve_device, train_module
from coffea_ad.processing.tables import feature_matrix
from coffea_ad.workflow.train import describe_training, train_to_folder

QUICK = {"epochs": 3, "batch_size": 256, "progress": False}


@pytest.fixture(scope="module")
def table():
    return dijet_table(3000, 0, seed=3)


def test_rows_lacking_a_value_are_dropped_and_counted_never_filled(table, tmp_path):
    broken = table.copy()
    broken.loc[[5, 17, 99], "tau21_j2"] = np.nan
    broken.loc[[17, 40], "mj_min"] = None
    broken.loc[[3, 4], "mjj"] = np.nan  # not a feature of the autoencoder: those rows stay
    n_incomplete = int(broken[FEATURES].isna().any(axis=1).sum())
    assert n_incomplete == 4
    model = AutoEncoder(training=QUICK, seed=2).fit(broken, FEATURES)
    counts = model.rows_["table"]
    assert counts["dropped_missing"] == n_incomplete
    assert counts["missing_by_column"] == {"mj_min": 2, "tau21_j2": 3}
    assert counts["used"] == len(table) - n_incomplete and counts["read"] == len(table)
    # dropping the rows by hand gives the same model: nothing was filled in
    complete = broken.dropna(subset=FEATURES).reset_index(drop=True)
    by_hand = AutoEncoder(training=QUICK, seed=2).fit(complete, FEATURES)
    np.testing.assert_array_equal(model.score(complete), by_hand.score(complete))
    # the count reaches summary.json and the printed description
    path = tmp_path / "broken.parquet"
    broken.to_parquet(path)
    summary = train_to_folder("autoencoder", path, tmp_path / "ae", features=FEATURES, training=QUICK, device="cpu")
    on_disk = json.loads((tmp_path / "ae" / "summary.json").read_text())
    assert on_disk["rows"]["table"]["dropped_missing"] == n_incomplete
    assert "4 dropped for a missing value (mj_min: 2, tau21_j2: 3)" in describe_training(summary)
    with pytest.raises(ConfigurationError, match="no row has a value in every column used"):
        AutoEncoder(training=QUICK).fit(broken.assign(mj_min=np.nan), FEATURES)


def test_infinite_values_are_an_error_naming_the_column(table):
    broken = table.copy()
    broken.loc[[5, 17], "tau21_j2"] = np.inf
    with pytest.raises(ConfigurationError, match=r"column 'tau21_j2' of the table has 2 row\(s\) with infinite"):
        AutoEncoder(training=QUICK).fit(broken, FEATURES)


def test_missing_column_is_named(table):
    with pytest.raises(ConfigurationError, match=r"'n_subjets' not in the table; its columns are: mjj"):
        feature_matrix(table, ["mj_min", "n_subjets"])


@pytest.mark.parametrize("method", [name for name in METHODS if get_estimator(name).requires])
def test_a_missing_required_input_names_the_option(method, table):
    estimator_class = get_estimator(method)
    needed = estimator_class.requires[0]
    with pytest.raises(ConfigurationError, match=rf"method '{method}' needs {needed} \({INPUT_OPTIONS[needed]}\)"):
        estimator_class(training=QUICK).fit(table)


def test_default_features_absent_from_the_table_ask_for_features(table):
    with pytest.raises(ConfigurationError, match=r"'autoencoder' trains by default on tau21_j1, tau32_j1, .*"
                                                 r"the table has no tau32_j1, tau32_j2: name the features"):
        AutoEncoder(training=QUICK).fit(table)


def test_an_input_the_method_does_not_use_is_refused(table):
    with pytest.raises(ConfigurationError, match=r"'autoencoder' does not use signal_region \(--signal-region\)"):
        AutoEncoder(training=QUICK).fit(table, FEATURES, signal_region="3300:3700")


def test_every_method_declares_its_networks_inputs_and_natural_features():
    for name in METHODS:
        estimator_class = get_estimator(name)
        assert estimator_class.networks, name
        assert set(estimator_class.requires) | set(estimator_class.accepts) <= set(INPUT_OPTIONS), name
        assert estimator_class.default_features and set(estimator_class.default_features) <= set(REGISTRY), name
        assert set(estimator_class().training) == set(estimator_class.networks), name
        inputs = estimator_class.input_defaults
        features = estimator_class.resolve_features(None, inputs)
        assert not set(estimator_class.conditions(inputs)) & set(features), name
        assert not {"genWeight", "run", "lep1_pt"} & set(features), name


def test_a_dict_and_a_training_give_the_same_cathode(table):
    settings = {"epochs": 2, "batch_size": 512, "progress": False}
    as_dict = CATHODE(transforms=2, training=settings, seed=3, folds=1)
    as_training = CATHODE(transforms=2, training=Training(**settings), seed=3, folds=1)
    per_network = CATHODE(transforms=2, training={"flow": settings, "classifier": Training(**settings)}, seed=3)
    for estimator in (as_dict, as_training, per_network):
        assert estimator.training["classifier"].keep_best == 10  # the class default, whatever the form
        assert estimator.training["flow"].keep_best == 1
    assert as_dict.training == as_training.training == per_network.training
    assert CATHODE(training={"classifier": {"keep_best": 3}}).training["classifier"].keep_best == 3
    data = dijet_table(3000, 100, seed=8)
    scores = [e.fit(data, FEATURES, signal_region="3300:3700").score(data) for e in (as_dict, as_training)]
    np.testing.assert_array_equal(*scores)
    with pytest.raises(ConfigurationError, match="networks of this method: flow, classifier"):
        CATHODE(training={"clasifier": {"epochs": 3}})
    with pytest.raises(ConfigurationError, match="unknown training setting"):
        Training(epoch=3)


def test_empty_region_and_empty_sidebands_are_clear(table):
    empty = table.assign(control=False)
    with pytest.raises(ConfigurationError, match="region 'control' selects no events.*no background"):
        MAF(training=QUICK).fit(empty, FEATURES, region="control")
    with pytest.raises(ConfigurationError, match="sidebands .* hold no events"):
        resonant_split(table, FEATURES, "mjj", (0.0, 1e9))
    with pytest.raises(ConfigurationError, match="signal region mjj in \\[1.0, 2.0\\) holds no events"):
        resonant_split(table, FEATURES, "mjj", (1.0, 2.0))
    with pytest.raises(ConfigurationError, match="LO:HI"):
        parse_signal_region("3300-3700")


def test_parquet_and_arrow_tables_give_the_same_matrix(table, tmp_path):
    import pyarrow as pa

    path = tmp_path / "features.parquet"
    table.to_parquet(path)
    expected = feature_matrix(table, FEATURES)
    np.testing.assert_array_equal(feature_matrix(path, FEATURES), expected)
    np.testing.assert_array_equal(feature_matrix(pa.Table.from_pandas(table), FEATURES), expected)


def test_same_seed_same_model_other_seed_other_model(table):
    first = AutoEncoder(training=QUICK, seed=4).fit(table, FEATURES).score(table)
    again = AutoEncoder(training=QUICK, seed=4).fit(table, FEATURES).score(table)
    other = AutoEncoder(training=QUICK, seed=5).fit(table, FEATURES).score(table)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_fit_leaves_torch_global_random_state_alone(table):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    AutoEncoder(training=QUICK).fit(table, FEATURES)
    torch.testing.assert_close(torch.rand(3), expected)


def _regression_problem(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(600, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(600, generator=generator)
    return (x[:500], y[:500]), (x[500:], y[500:])


def _mse(module, batch):
    return ((module(batch[0]).squeeze(-1) - batch[1]) ** 2).mean()


def _linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


def test_early_stopping_triggers_and_keeps_the_best_epoch():
    train, validation = _regression_problem()
    # a learning rate this large makes the validation loss stop improving quickly
    module = _linear()
    result = train_module(
        module, _mse, train, validation, epochs=200, batch_size=50, learning_rate=0.5, patience=3, progress=False
    )
    assert result.stopped_early
    assert len(result.train_loss) < 200
    assert len(result.validation_loss) == result.best_epoch + 1 + 3
    best = min(result.validation_loss)
    with torch.no_grad():
        assert float(_mse(module, validation)) == pytest.approx(best, rel=1e-5)


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    train, validation = _regression_problem()
    settings = dict(epochs=8, batch_size=32, learning_rate=0.01, patience=None, keep_best=3, progress=False, seed=9)
    uninterrupted = _linear()
    reference = train_module(uninterrupted, _mse, train, validation, **settings)

    class Interrupt(Exception):
        pass

    def stop_after_third(epoch, _result):
        if epoch == 2:
            raise Interrupt

    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        train_module(
            _linear(), _mse, train, validation, checkpoint=checkpoint, run_id="a", on_epoch_end=stop_after_third,
            **settings,
        )
    torch.manual_seed(999)  # the resumed run must not depend on the state the interruption left behind
    resumed_module = torch.nn.Linear(3, 1)
    resumed = train_module(resumed_module, _mse, train, validation, checkpoint=checkpoint, run_id="a", **settings)
    assert resumed.validation_loss == reference.validation_loss
    for key, value in uninterrupted.state_dict().items():
        torch.testing.assert_close(resumed_module.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(ConfigurationError, match="different training run"):
        train_module(_linear(), _mse, train, validation, checkpoint=checkpoint, run_id="b", **settings)


def test_estimator_resumes_from_its_checkpoint_folder(table, tmp_path, monkeypatch):
    import coffea_ad.models.base as base

    settings = {"epochs": 4, "patience": None, "progress": False}
    expected = MAF(transforms=2, training=settings).fit(table, FEATURES).score(table)
    original = base.train_module

    def interrupted(*args, **kwargs):
        def stop(epoch, _result):
            if epoch == 1:
                raise KeyboardInterrupt

        return original(*args, on_epoch_end=stop, **kwargs)

    monkeypatch.setattr(base, "train_module", interrupted)
    with pytest.raises(KeyboardInterrupt):
        MAF(transforms=2, training=settings).fit(table, FEATURES, checkpoint_dir=tmp_path)
    monkeypatch.setattr(base, "train_module", original)
    resumed = MAF(transforms=2, training=settings).fit(table, FEATURES, checkpoint_dir=tmp_path).score(table)
    np.testing.assert_array_equal(resumed, expected)


def test_save_and_load_round_trip_without_pickle(table, tmp_path):
    model = MAF(transforms=2, feature_transforms={"mj_min": "log"}, training=QUICK).fit(table, FEATURES)
    model.save(tmp_path / "maf")
    loaded = Estimator.load(tmp_path / "maf")
    assert type(loaded) is MAF and loaded.get_params()["feature_transforms"] == {"mj_min": "log"}
    np.testing.assert_array_equal(loaded.score(table), model.score(table))
    with pytest.raises(InputFileError, match="holds a MAF, not a AutoEncoder"):
        AutoEncoder.load(tmp_path / "maf")
    # a weights file that needs unpickling of arbitrary objects is refused
    torch.save({"model": {"x": object()}}, tmp_path / "maf" / "weights.pt")
    with pytest.raises(InputFileError, match="cannot load"):
        Estimator.load(tmp_path / "maf")
    with pytest.raises(InputFileError, match="no saved coffea_ad model"):
        Estimator.load(tmp_path / "nothing")


def test_unfitted_and_unknown_methods():
    with pytest.raises(NotFittedError, match="not fitted"):
        MAF().score({"a": np.zeros(3)})
    with pytest.raises(ConfigurationError, match="valid methods: autoencoder, vae, realnvp, maf, cwola"):
        get_estimator("isolation-forest")
    assert all(get_estimator(name).method == name for name in METHODS)
    assert issubclass(ConfigurationError, CoffeaADError)


def test_device_auto_and_unavailable_cuda():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigurationError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ConfigurationError, match="auto, cpu or cuda"):
        resolve_device("tpu")


def test_preprocessing_log_jacobian_matches_autograd():
    pre = Preprocessor(3, ["log", "logit", "none"])
    rng = np.random.default_rng(0)
    x = np.stack([rng.exponential(2.0, 500) + 0.1, rng.uniform(0.05, 0.95, 500), rng.normal(3.0, 2.0, 500)], axis=1)
    pre.fit(x)
    point = torch.tensor(x[:4], dtype=torch.float32)
    z, log_det = pre(point)
    for row in range(4):
        jacobian = torch.autograd.functional.jacobian(lambda v: pre(v[None])[0][0], point[row])
        assert float(log_det[row]) == pytest.approx(float(torch.logdet(jacobian)), abs=1e-4)
    torch.testing.assert_close(pre.inverse(z), point, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z.mean(0).numpy(), 0.0, atol=2.0)
    with pytest.raises(ConfigurationError, match="logit transform of column 1 needs 0 < x < 1; 1 row"):
        Preprocessor(3, ["none", "logit", "none"]).fit(np.array([[0.0, 1.5, 0.0], [0.0, 0.5, 0.0]]))


def test_flow_density_is_normalised_in_raw_coordinates():
    """exp(-score) integrates to ~1 over the raw feature: the log-Jacobian of the preprocessing is included."""
    rng = np.random.default_rng(1)
    table = {"energy": (rng.gamma(3.0, 50.0, 4000) + 1.0).astype(np.float32)}
    flow = MAF(transforms=2, feature_transforms={"energy": "log"}, training={"epochs": 15, "progress": False})
    flow.fit(table, ["energy"])
    grid = np.linspace(0.5, 1500.0, 6000, dtype=np.float32)
    density = np.exp(-flow.score_array(grid[:, None]))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=0.03)


def test_summary_is_json(table):
    summary = AutoEncoder(training=QUICK).fit(table, FEATURES).summary()
    assert json.loads(json.dumps(summary))["history"]["autoencoder"]["epochs_run"] == 3
