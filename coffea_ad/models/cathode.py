"""Density-based weak supervision for resonant searches: CATHODE, LaCATHODE and ANODE.

A conditional flow ``p(x | m)`` learns the background in the sidebands of the resonant variable ``m``
(``mjj``) and is interpolated into the signal region.

References:
    Hallin et al., "Classifying Anomalies THrough Outer Density Estimation (CATHODE)", arXiv:2109.00546;
    Hallin, Kasieczka, Quadfasel, Shih, Sommerhalder, "Resonant anomaly detection without background
    sculpting" (LaCATHODE), arXiv:2210.14924;
    Nachman, Shih, "Anomaly Detection with Density Estimation" (ANODE), arXiv:2001.04990;
    Bai, Mastandrea, Nachman, arXiv:2311.12924 (Generate and Morph: context variables HT, MET).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from coffea_ad.errors import ConfigurationError
from coffea_ad.models.base import Estimator, Training
from coffea_ad.models.data import ResonantSplit, Table, context_split, parse_signal_region, resonant_split, table_hash
from coffea_ad.models.flows import ConditionalDensity, build_flow, negative_log_likelihood
from coffea_ad.models.preprocessing import Preprocessor
from coffea_ad.models.weak import ClassifierMethod

__all__ = ["sample_kde", "CATHODE", "LaCATHODE", "ANODE", "Generate", "Morph"]

logger = logging.getLogger(__name__)


def sample_kde(values: np.ndarray, n: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` values from a Gaussian KDE of ``values`` (Scott's bandwidth), truncated to ``[low, high)``."""
    width = 1.06 * float(np.std(values)) * len(values) ** (-1 / 5)
    out = np.empty(0, dtype=np.float32)
    while len(out) < n:
        draw = rng.choice(values, size=2 * n) + rng.normal(0.0, width, size=2 * n)
        out = np.concatenate([out, draw[(draw >= low) & (draw < high)].astype(np.float32)])
    return out[:n]


class _SidebandDensity:
    """Shared parts of CATHODE, LaCATHODE and ANODE: the conditional flow ``p(x | m)``, the signal-region
    split and the KDE of the signal-region ``m``. ``__init__`` calls :meth:`_set_flow`.
    """

    def _set_flow(
        self,
        flow_type: str,
        transforms: int,
        flow_hidden: Sequence[int],
        feature_transforms: Mapping[str, str] | None,
        flow_training: Training | dict | None,
    ) -> None:
        """Store the flow hyperparameters (called by ``__init__``)."""
        self.flow_type = flow_type
        self.transforms = transforms
        self.flow_hidden = list(flow_hidden)
        self.feature_transforms = dict(feature_transforms or {})
        self.flow_training = Training.coerce(flow_training)

    @property
    def _n_context(self) -> int:
        return 1

    def _new_density(self) -> ConditionalDensity:
        n = len(self.features_)
        flow = build_flow(self.flow_type, n, self._n_context, self.transforms, self.flow_hidden)
        pre_x = Preprocessor(n, Preprocessor.resolve(self.features_, self.feature_transforms))
        return ConditionalDensity(flow, pre_x, Preprocessor(self._n_context))

    def _fit_density(
        self, density: ConditionalDensity, x: np.ndarray, m: np.ndarray, name: str, salt: int, checkpoint_dir
    ) -> dict:
        """Fit ``p(x | m)`` with the flow training settings; return its history."""
        train, val = self._split(len(x), salt=salt)
        m = m.reshape(len(m), -1)
        density.pre_x.fit(x[train])
        density.pre_c.fit(m[train])
        density.to(self.torch_device)
        result = self._train(
            density,
            negative_log_likelihood,
            [x[train], m[train]],
            [x[val], m[val]],
            name=name,
            checkpoint_dir=checkpoint_dir,
            settings=self.flow_training,
        )
        density.cpu().eval()
        return result.summary()

    def _start(
        self, table: Table, features: Sequence[str], mass: str, signal_region, region: str | None
    ) -> ResonantSplit:
        self.mass_ = mass
        self.signal_region_ = list(parse_signal_region(signal_region))
        split = resonant_split(table, features, mass, tuple(self.signal_region_), region)
        self.features_, self.region_ = list(features), region
        self.table_hash_ = table_hash([*features, mass], split.x, split.m[:, None])
        return split

    def _sample_masses(self, split: ResonantSplit) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 11])
        return sample_kde(split.m_sr, self.oversampling * len(split.m_sr), *self.signal_region_, rng)

    def sample(self, m: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """Background samples of the raw features, one per value of the resonant variable (or per row of
        the context variables) ``m``; the same ``m`` and estimator seed give the same samples."""
        self._check_fitted()
        m = np.asarray(m, dtype=np.float32).reshape(len(m), -1)
        out = []
        with self._seeded(), torch.no_grad():
            for start in range(0, len(m), batch_size):
                c = torch.as_tensor(m[start : start + batch_size])
                out.append(self.density_.pre_x.inverse(self.density_.sample_preprocessed(c)).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.features_)), np.float32)


class CATHODE(_SidebandDensity, ClassifierMethod):
    """CATHODE: a conditional flow ``p(x | m)`` on the sidebands, sampled in the signal region with ``m`` from
    a KDE of the signal-region ``m``; a classifier of signal-region data vs those samples is the score.

    The classifier sees the raw features (samples are mapped back through the inverse preprocessing), so
    the MLP and the boosted trees take the same inputs. Its ``training.keep_best`` best epochs form the
    ensemble (default 10, as in the paper).

    Arguments (besides those of :class:`~coffea_ad.models.weak.ClassifierMethod`):
        flow_type: ``"maf"`` or ``"realnvp"`` for the conditional density ``p(x | m)``.
        transforms / flow_hidden: size of the flow.
        feature_transforms: ``{column: "log" | "logit"}`` before standardisation (in the flow's space).
        oversampling: background samples per signal-region event.
        flow_training: training settings of the flow (``training`` is the classifier's; its ``keep_best``
            best epochs form the classifier ensemble, 10 by default as in the paper).

    References:
        Hallin et al., arXiv:2109.00546.

    Example:
        >>> cathode = CATHODE(oversampling=4).fit(table, ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"],
        ...                                       signal_region="3300:3700")
        >>> scores = cathode.score(table)
    """

    method: ClassVar[str] = "cathode"
    _fitted_attributes: ClassVar[tuple[str, ...]] = ("classifier_shapes_", "mass_", "signal_region_")

    def __init__(
        self,
        classifier: str = "mlp",
        hidden: Sequence[int] = (64, 64, 64),
        ensemble: int = 1,
        flow_type: str = "maf",
        transforms: int = 4,
        flow_hidden: Sequence[int] = (64, 64),
        feature_transforms: Mapping[str, str] | None = None,
        oversampling: int = 4,
        *,
        flow_training: Training | dict | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if training is None or isinstance(training, dict):
            training = Training.coerce({"keep_best": 10, **(training or {})})
        super().__init__(classifier, hidden, ensemble, training=training, seed=seed, device=device)
        if oversampling < 1:
            raise ConfigurationError(f"oversampling must be >= 1, got {oversampling}")
        self._set_flow(flow_type, transforms, flow_hidden, feature_transforms, flow_training)
        self.oversampling = oversampling

    def _build(self) -> None:
        super()._build()
        self.density_ = self._new_density()

    def _modules(self) -> dict[str, nn.Module]:
        return {"classifiers": self.classifiers_, "density": self.density_}

    def fit(
        self,
        table: Table,
        features: Sequence[str],
        *,
        signal_region: str | Sequence[float],
        mass: str = "mjj",
        region: str | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> CATHODE:
        """Fit the sideband flow, sample the signal region and train data vs samples there."""
        split = self._start(table, features, mass, signal_region, region)
        self._fit_split(split, self._sample_masses(split), checkpoint_dir)
        return self

    def _fit_split(self, split: ResonantSplit, conditions: np.ndarray, checkpoint_dir: str | Path | None) -> None:
        """Flow on the sidebands / control region, one sample per row of ``conditions``, then the classifier."""
        with self._seeded():
            self.density_ = self._new_density()
            flow = self._fit_density(self.density_, split.x_sb, split.m_sb, "flow", 1, checkpoint_dir)
            self.history_ = {"flow": flow}
            samples = self.sample(conditions)
        finite = np.isfinite(samples).all(axis=1)
        if not finite.all():
            logger.warning("%s: dropping %d non-finite flow samples", self.method, int((~finite).sum()))
            samples = samples[finite]
        x = np.concatenate([split.x_sr, samples])
        labels = np.concatenate([np.ones(len(split.x_sr)), np.zeros(len(samples))])
        self._fit_classifiers(x, labels, None, checkpoint_dir)


class Generate(CATHODE):
    """Non-resonant Generate: CATHODE with context variables ``c`` (default HT, MET) in place of ``mjj``.

    A conditional flow ``p(x | c)`` is trained in the control region (the events without the boolean
    ``signal_flag``), sampled at the context values of the signal-region events (``oversampling`` times each),
    and a classifier of signal-region data vs samples is the score (input columns: the features).

    References:
        Bai, Mastandrea, Nachman, "Non-resonant Anomaly Detection with Background Extrapolation", arXiv:2311.12924.
    """

    method: ClassVar[str] = "generate"
    _fitted_attributes: ClassVar[tuple[str, ...]] = ("classifier_shapes_", "context_", "signal_flag_")

    @property
    def _n_context(self) -> int:
        return len(self.context_)

    def fit(
        self,
        table: Table,
        features: Sequence[str],
        *,
        signal_flag: str,
        context: Sequence[str] = ("ht", "met"),
        region: str | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> Generate:
        """Fit ``p(x | c)`` in the control region, sample it in the signal region, train data vs samples."""
        split = context_split(table, features, context, signal_flag, region)
        self.features_, self.region_ = list(features), region
        self.context_, self.signal_flag_ = list(context), signal_flag
        self.table_hash_ = table_hash([*features, *context], split.x, split.m)
        rng = np.random.default_rng([self.seed, 17])
        conditions = split.m_sr[rng.integers(0, len(split.m_sr), self.oversampling * len(split.m_sr))]
        self._fit_split(split, conditions, checkpoint_dir)
        return self


class _LatentClassifierScore(nn.Module):
    """Raw ``[x, m]`` -> flow latent coordinates -> classifier probability."""

    def __init__(self, density: ConditionalDensity, classifiers: nn.ModuleList) -> None:
        super().__init__()
        self.density = density
        self.classifiers = classifiers

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        latent = self.density.latent(inputs[:, :-1], inputs[:, -1:])
        return torch.stack([classifier(latent) for classifier in self.classifiers]).mean(dim=0)


class LaCATHODE(CATHODE):
    """LaCATHODE: CATHODE with the classifier trained in the sideband flow's latent space.

    Signal-region data are mapped to latent coordinates with their own ``m``; the background there is a
    standard normal, so the classifier learns data-latent vs normal samples. Because the latent space is
    decorrelated from ``m``, selecting on the score sculpts the ``m`` spectrum much less. The score reads
    the features and then the resonant variable (ONNX input columns: features + [mass]).

    References:
        Hallin, Kasieczka, Quadfasel, Shih, Sommerhalder, arXiv:2210.14924.
    """

    method: ClassVar[str] = "lacathode"

    _score_reads_mass: ClassVar[bool] = True

    def fit(
        self,
        table: Table,
        features: Sequence[str],
        *,
        signal_region: str | Sequence[float],
        mass: str = "mjj",
        region: str | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> LaCATHODE:
        """Fit the sideband flow, map signal-region data to its latent space and train data vs normal samples."""
        split = self._start(table, features, mass, signal_region, region)
        with self._seeded():
            self.density_ = self._new_density()
            flow = self._fit_density(self.density_, split.x_sb, split.m_sb, "flow", 1, checkpoint_dir)
            self.history_ = {"flow": flow}
            with torch.no_grad():
                latent = self.density_.latent(torch.as_tensor(split.x_sr), torch.as_tensor(split.m_sr[:, None])).numpy()
            shape = (self.oversampling * len(latent), latent.shape[1])
            normal = np.random.default_rng([self.seed, 13]).standard_normal(shape)
        x = np.concatenate([latent, normal.astype(np.float32)])
        labels = np.concatenate([np.ones(len(latent)), np.zeros(len(normal))])
        self._fit_classifiers(x, labels, None, checkpoint_dir)
        return self

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        return _LatentClassifierScore(self.density_, self.classifiers_).eval()


class _LogDensityRatio(nn.Module):
    def __init__(self, signal_region: ConditionalDensity, sidebands: ConditionalDensity) -> None:
        super().__init__()
        self.signal_region = signal_region
        self.sidebands = sidebands

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x, m = inputs[:, :-1], inputs[:, -1:]
        return self.signal_region.log_prob(x, m) - self.sidebands.log_prob(x, m)


class ANODE(_SidebandDensity, Estimator):
    """ANODE: score = ``log p_SR(x | m) - log p_SB(x | m)``, two conditional flows trained on the signal-region
    data and on the sidebands (interpolated into the signal region). Input columns: features + [mass].
    Arguments as for :class:`CATHODE`'s flow; ``training`` applies to both flows.

    References:
        Nachman, Shih, "Anomaly Detection with Density Estimation", arXiv:2001.04990.
    """

    method: ClassVar[str] = "anode"
    _fitted_attributes: ClassVar[tuple[str, ...]] = ("mass_", "signal_region_")

    def __init__(
        self,
        flow_type: str = "maf",
        transforms: int = 4,
        flow_hidden: Sequence[int] = (64, 64),
        feature_transforms: Mapping[str, str] | None = None,
        *,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(training=training, seed=seed, device=device)
        self._set_flow(flow_type, transforms, flow_hidden, feature_transforms, self.training)

    _score_reads_mass: ClassVar[bool] = True

    def _build(self) -> None:
        self.density_ = self._new_density()
        self.density_sr_ = self._new_density()

    def _modules(self) -> dict[str, nn.Module]:
        return {"density": self.density_, "density_sr": self.density_sr_}

    def fit(
        self,
        table: Table,
        features: Sequence[str],
        *,
        signal_region: str | Sequence[float],
        mass: str = "mjj",
        region: str | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> ANODE:
        """Fit ``p_SB(x | m)`` on the sidebands and ``p_SR(x | m)`` on the signal region."""
        split = self._start(table, features, mass, signal_region, region)
        with self._seeded():
            self._build()
            self.history_ = {
                "flow": self._fit_density(self.density_, split.x_sb, split.m_sb, "flow", 1, checkpoint_dir),
                "flow_sr": self._fit_density(self.density_sr_, split.x_sr, split.m_sr, "flow_sr", 2, checkpoint_dir),
            }
        return self

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        return _LogDensityRatio(self.density_sr_, self.density_).eval()


class _MorphModel(nn.Module):
    """``log p_data(x | c) = log p_sim(T(x | c) | c) + log |det dT/dx|`` with the simulation density frozen."""

    def __init__(self, simulation: ConditionalDensity, morph: nn.Module) -> None:
        super().__init__()
        self.simulation = simulation
        self.morph = morph
        for parameter in self.simulation.parameters():
            parameter.requires_grad_(False)

    def log_prob(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        z, log_det = self.simulation.pre_x(x)
        context = self.simulation.context(c)
        y, ladj = self.morph(context).call_and_ladj(z)
        return self.simulation.flow(context).log_prob(y) + ladj + log_det

    @torch.no_grad()
    def transport(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Move simulated events onto data: ``T^-1(x_sim | c)`` in raw coordinates."""
        z = self.simulation.pre_x(x)[0]
        return self.simulation.pre_x.inverse(self.morph(self.simulation.context(c)).inv(z))


class Morph(_SidebandDensity, ClassifierMethod):
    """Non-resonant Morph: a flow that moves simulation onto data, learned in the control region.

    A conditional flow ``p_sim(x | c)`` is fitted to the whole simulation; on top of it a second conditional
    transform ``T(x | c)`` is trained on control-region data so that ``p_sim(T(x | c) | c) |det dT/dx|``
    is the data density; signal-region simulation moved by ``T^-1`` is the background template, and a
    classifier of signal-region data vs that template is the score (input columns: the features).

    References:
        Bai, Mastandrea, Nachman, arXiv:2311.12924; Golling et al., "Flow-enhanced transportation for anomaly
        detection" (FETA), arXiv:2212.11285.
    """

    method: ClassVar[str] = "morph"
    _fitted_attributes: ClassVar[tuple[str, ...]] = ("classifier_shapes_", "context_", "signal_flag_")

    def __init__(
        self,
        classifier: str = "mlp",
        hidden: Sequence[int] = (64, 64, 64),
        ensemble: int = 1,
        flow_type: str = "maf",
        transforms: int = 4,
        flow_hidden: Sequence[int] = (64, 64),
        feature_transforms: Mapping[str, str] | None = None,
        *,
        flow_training: Training | dict | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(classifier, hidden, ensemble, training=training, seed=seed, device=device)
        self._set_flow(flow_type, transforms, flow_hidden, feature_transforms, flow_training)

    @property
    def _n_context(self) -> int:
        return len(self.context_)

    def _new_morph(self) -> _MorphModel:
        morph = build_flow(self.flow_type, len(self.features_), self._n_context, self.transforms, self.flow_hidden)
        return _MorphModel(self.density_, morph.transform)

    def _build(self) -> None:
        super()._build()
        self.density_ = self._new_density()
        self.morph_ = self._new_morph()

    def _modules(self) -> dict[str, nn.Module]:
        return {"classifiers": self.classifiers_, "morph": self.morph_}

    def fit(
        self,
        table: Table,
        features: Sequence[str],
        *,
        simulation: Table,
        signal_flag: str,
        context: Sequence[str] = ("ht", "met"),
        region: str | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> Morph:
        """Fit ``p_sim(x | c)``, the morph on control-region data, and data vs morphed simulation in the SR."""
        data = context_split(table, features, context, signal_flag, region)
        simulated = context_split(simulation, features, context, signal_flag, region)
        self.features_, self.region_ = list(features), region
        self.context_, self.signal_flag_ = list(context), signal_flag
        self.table_hash_ = table_hash([*features, *context], data.x, data.m, simulated.x, simulated.m)
        with self._seeded():
            self.density_ = self._new_density()
            flow = self._fit_density(self.density_, simulated.x, simulated.m, "flow", 3, checkpoint_dir)
            self.history_ = {"flow": flow}
            self.morph_ = self._new_morph().to(self.torch_device)
            train, val = self._split(int((~data.in_sr).sum()), salt=4)
            x_cr, c_cr = data.x_sb, data.m_sb
            result = self._train(
                self.morph_,
                negative_log_likelihood,
                [x_cr[train], c_cr[train]],
                [x_cr[val], c_cr[val]],
                name="morph",
                checkpoint_dir=checkpoint_dir,
                settings=self.flow_training,
            )
            self.morph_.cpu().eval()
            self.history_["morph"] = result.summary()
            template = self.morph_.transport(torch.as_tensor(simulated.x_sr), torch.as_tensor(simulated.m_sr)).numpy()
        finite = np.isfinite(template).all(axis=1)
        x = np.concatenate([data.x_sr, template[finite]])
        labels = np.concatenate([np.ones(len(data.x_sr)), np.zeros(int(finite.sum()))])
        self._fit_classifiers(x, labels, None, checkpoint_dir)
        return self
