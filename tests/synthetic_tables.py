"""Small synthetic feature tables with the structure of a dijet resonance search (no Pythia needed).

Background: a falling mjj spectrum and four smooth features (mj_min, delta_mj, tau21_j1, tau21_j2 in
their physical ranges, mildly correlated with each other); signal: a narrow mjj peak with localized
jet masses and low tau21 (two-prong jets), as in the LHC Olympics R&D sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

FEATURES = ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"]
SIGNAL_REGION = (3300.0, 3700.0)


def dijet_table(n_background: int, n_signal: int = 0, seed: int = 0, mismodelling: float = 0.0) -> pd.DataFrame:
    """A feature table with columns mjj, FEATURES, ht, met, is_signal, the event ids run, luminosityBlock, event
    (unique per ``seed``: event numbers start at ``seed * 10**7``) and boolean flags ``preselection`` and
    ``high_ht_met`` (the non-resonant signal region HT > 3 TeV and MET > 150 GeV).

    ``mismodelling`` > 0 makes a "simulation": jet masses scaled and tau21 shifted by that fraction.
    """
    rng = np.random.default_rng(seed)
    mjj_b = 2500.0 + rng.exponential(700.0, n_background)
    mj_b = (rng.gamma(2.0, 60.0, n_background) + 20.0) * (1.0 + mismodelling)
    dmj_b = np.abs(rng.normal(0.0, 120.0, n_background) + 0.3 * (mj_b - 140.0))
    t1_b = np.clip(rng.beta(5.0, 2.5, n_background) - mismodelling, 0.02, 0.98)
    t2_b = np.clip(0.6 * t1_b + 0.4 * rng.beta(5.0, 2.5, n_background), 0.02, 0.98)
    mjj_s = rng.normal(3500.0, 60.0, n_signal)
    mj_s = rng.normal(100.0, 15.0, n_signal)
    dmj_s = np.abs(rng.normal(300.0, 40.0, n_signal))
    t1_s = np.clip(rng.normal(0.35, 0.1, n_signal), 0.02, 0.98)
    t2_s = np.clip(rng.normal(0.35, 0.1, n_signal), 0.02, 0.98)
    ht_b = 0.9 * mjj_b + rng.exponential(150.0, n_background)
    met_b = rng.exponential(60.0, n_background) * (1.0 + (ht_b - 2500.0) / 5000.0)
    ht_s = rng.normal(3600.0, 150.0, n_signal)
    met_s = rng.normal(250.0, 40.0, n_signal)
    table = pd.DataFrame(
        {
            "mjj": np.concatenate([mjj_b, mjj_s]),
            "ht": np.concatenate([ht_b, ht_s]),
            "met": np.concatenate([met_b, met_s]),
            "mj_min": np.concatenate([mj_b, mj_s]),
            "delta_mj": np.concatenate([dmj_b, dmj_s]),
            "tau21_j1": np.concatenate([t1_b, t1_s]),
            "tau21_j2": np.concatenate([t2_b, t2_s]),
            "is_signal": np.concatenate([np.zeros(n_background, bool), np.ones(n_signal, bool)]),
        }
    ).astype({name: np.float32 for name in ["mjj", "ht", "met", *FEATURES]})
    number = np.arange(len(table), dtype=np.uint64)
    table["run"] = np.ones(len(table), np.uint32)
    table["luminosityBlock"] = (1 + number // 1000).astype(np.uint32)
    table["event"] = number + np.uint64(seed * 10**7 + 1)
    table["preselection"] = table["mjj"] > 2600.0
    table["high_ht_met"] = (table["ht"] > 3000.0) & (table["met"] > 150.0)
    return table.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic), labels 1 = signal."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    return float((ranks[labels.astype(bool)].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@pytest.fixture(autouse=True)
def single_thread():
    """Run every test of a module that imports this fixture with one torch thread (the test machine's
    cores are shared, and two threads contend)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
