"""Density-based weak supervision: CATHODE, LaCATHODE, CURTAINs, FETA, ANODE and R-ANODE (resonant), Generate and
Morph (non-resonant).

A conditional flow ``p(x | m)`` learns the background in the sidebands of the resonant variable ``m``
(``mjj``) and is interpolated into the signal region; the non-resonant methods condition on context
variables ``c = (HT, MET)`` instead and extrapolate from a control region.

References:
    Hallin et al., "Classifying Anomalies THrough Outer Density Estimation (CATHODE)", arXiv:2109.00546;
    Hallin, Kasieczka, Quadfasel, Shih, Sommerhalder, "Resonant anomaly detection without background
    sculpting" (LaCATHODE), arXiv:2210.14924;
    Nachman, Shih, "Anomaly Detection with Density Estimation" (ANODE), arXiv:2001.04990;
    Das, Kasieczka, Shih, "Residual ANODE" (R-ANODE), arXiv:2312.11629;
    Sengupta, Klein, Raine, Golling, "CURTAINs Flows For Flows", arXiv:2305.04646;
    Golling, Klein, Mastandrea, Nachman, Raine, "Flow-enhanced transportation for anomaly detection" (FETA),
    arXiv:2212.11285;
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
from coffea_ad.features import FEATURE_SETS
from coffea_ad.models.base import Estimator, Training
from coffea_ad.models.data import RESONANT_INPUT_DEFAULTS, TrainingData
from coffea_ad.models.flows import ConditionalDensity, build_flow, negative_log_likelihood, start_at_identity
from coffea_ad.models.preprocessing import Preprocessor
from coffea_ad.models.training import TrainingResult
from coffea_ad.models.weak import DIJET_FEATURES, ClassifierMethod
from coffea_ad.processing.tables import Table, feature_matrix, open_table

__all__ = [
    "NONRESONANT_FEATURES",
    "sample_kde",
    "CATHODE",
    "LaCATHODE",
    "CURTAINs",
    "ANODE",
    "RANODE",
    "Generate",
    "Morph",
    "FETA",
]

logger = logging.getLogger(__name__)

NONRESONANT_FEATURES: tuple[str, ...] = FEATURE_SETS["nonresonant"]
"""The non-resonant methods' default features: the ``nonresonant`` set without the context columns."""

_RESONANT = {
    "requires": (),
    "accepts": ("signal_region", "mass"),
    "input_defaults": RESONANT_INPUT_DEFAULTS,
}


def sample_kde(values: np.ndarray, n: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` values from a Gaussian KDE of ``values`` (Scott's bandwidth), truncated to ``[low, high)``."""
    width = 1.06 * float(np.std(values)) * len(values) ** (-1 / 5)
    out = np.empty(0, dtype=np.float32)
    while len(out) < n:
        draw = rng.choice(values, size=2 * n) + rng.normal(0.0, width, size=2 * n)
        out = np.concatenate([out, draw[(draw >= low) & (draw < high)].astype(np.float32)])
    return out[:n]


class _SidebandDensity:
    """Shared parts of the flow-based methods: the conditional flow ``p(x | c)`` (network ``"flow"``), its
    fit, and sampling. ``__init__`` calls :meth:`_set_flow`."""

    def _set_flow(
        self,
        flow_type: str,
        transforms: int,
        flow_hidden: Sequence[int],
        feature_transforms: Mapping[str, str] | None,
    ) -> None:
        """Store the flow hyperparameters (called by ``__init__``)."""
        self.flow_type = flow_type
        self.transforms = transforms
        self.flow_hidden = list(flow_hidden)
        self.feature_transforms = dict(feature_transforms or {})

    def _new_density(self) -> ConditionalDensity:
        n, k = len(self.features_), len(self.conditions_)
        flow = build_flow(self.flow_type, n, k, self.transforms, self.flow_hidden)
        pre_x = Preprocessor(n, Preprocessor.resolve(self.features_, self.feature_transforms))
        return ConditionalDensity(flow, pre_x, Preprocessor(k))

    def _fit_density(
        self, density: ConditionalDensity, x: np.ndarray, c: np.ndarray, name: str, salt: int, checkpoint_dir
    ) -> TrainingResult:
        """Fit ``p(x | c)`` with the settings of the network ``"flow"``."""
        return self._train_network(
            "flow", density, negative_log_likelihood, [x, c], name=name, salt=salt, checkpoint_dir=checkpoint_dir
        )

    def _sample_masses(self, data: TrainingData) -> np.ndarray:
        """``oversampling`` resonant-variable values per signal-region event, from a KDE of theirs."""
        rng = np.random.default_rng([self.seed, 11])
        m_sr = data.m_sr[:, 0]
        return sample_kde(m_sr, self.oversampling * len(m_sr), *self.inputs_["signal_region"], rng)

    def _fit_on_template(self, data: TrainingData, template: np.ndarray, checkpoint_dir: str | Path | None) -> None:
        """The classifier of signal-region data (label 1) vs the background ``template`` (label 0); template rows
        with a non-finite value are dropped with a warning."""
        samples, _ = _finite(template)
        if len(samples) < len(template):
            logger.warning("%s: dropping %d non-finite template events", self.method, len(template) - len(samples))
        x = np.concatenate([data.x_sr, samples])
        labels = np.concatenate([np.ones(len(data.x_sr)), np.zeros(len(samples))])
        self._fit_classifiers(x, labels, checkpoint_dir)

    def sample(self, m: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """Background samples of the raw features, one per value of the resonant variable (or per row of
        the context variables) ``m``; the same ``m`` and estimator seed give the same samples. They come from
        the flow's best epoch (the training template of a flow ensemble, :meth:`_template_samples`, from all
        of its kept epochs)."""
        self._check_fitted()
        return self._draw(m, self.seed, batch_size)

    def _draw(self, m: np.ndarray, seed: int, batch_size: int = 65536) -> np.ndarray:
        """One sample of the current flow state per row of ``m``, torch seeded with ``seed``."""
        m = np.asarray(m, dtype=np.float32).reshape(len(m), -1)
        out = []
        devices = [self.torch_device] if self.torch_device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            for start in range(0, len(m), batch_size):
                c = torch.as_tensor(m[start : start + batch_size])
                out.append(self.density_.pre_x.inverse(self.density_.sample_preprocessed(c)).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.features_)), np.float32)

    def _template_samples(self, flow: TrainingResult, conditions: np.ndarray) -> np.ndarray:
        """The background template: one sample per row of ``conditions``, in equal shares from each flow state
        the training of ``"flow"`` kept (``keep_best`` > 1: the ensemble of the flow's best epochs of the
        CATHODE paper; 1: the best epoch alone, as :meth:`sample`). The flow holds its best epoch afterwards."""
        if len(flow.best_states) <= 1:
            return self.sample(conditions)
        shares = np.array_split(np.asarray(conditions, dtype=np.float32), len(flow.best_states))
        out = []
        for k, (state, share) in enumerate(zip(flow.best_states, shares)):
            self.density_.load_state_dict(state)
            seed = self.seed if k == 0 else int(np.random.SeedSequence([self.seed, 29, k]).generate_state(1)[0])
            out.append(self._draw(share, seed))
        self.density_.load_state_dict(flow.best_states[0])
        return np.concatenate(out)


def _finite(x: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``x`` (and their weights, default 1) without a non-finite value."""
    weights = np.ones(len(x)) if weights is None else weights
    keep = np.isfinite(x).all(axis=1)
    return x[keep], weights[keep]


class CATHODE(_SidebandDensity, ClassifierMethod):
    """CATHODE: a conditional flow ``p(x | m)`` on the sidebands, sampled in the signal region with ``m`` from
    a KDE of the signal-region ``m``; a classifier of signal-region data vs those samples is the score.

    The classifier sees the raw features (samples are mapped back through the inverse preprocessing), so
    the MLP and the boosted trees take the same inputs. Networks: ``"flow"`` and ``"classifier"``; the
    classifier keeps its 10 best epochs by default (the ensemble of the paper), whatever form ``training``
    takes.

    Arguments (besides those of :class:`~coffea_ad.models.weak.ClassifierMethod`):
        flow_type: ``"maf"`` or ``"realnvp"`` for the conditional density ``p(x | m)``.
        transforms / flow_hidden: size of the flow.
        feature_transforms: ``{column: "log" | "logit"}`` before standardisation (in the flow's space).
        oversampling: background samples per signal-region event.

    Inputs: ``signal_region``, ``mass`` (default ``mjj``). Default features: the LHC Olympics set.

    References:
        Hallin et al., arXiv:2109.00546.

    Example:
        >>> cathode = CATHODE(oversampling=4, training={"epochs": 20, "classifier": {"keep_best": 5}})
        >>> cathode.fit(table, signal_region="3300:3700").score(table)
    """

    method: ClassVar[str] = "cathode"
    networks: ClassVar[tuple[str, ...]] = ("flow", "classifier")
    network_defaults: ClassVar[dict[str, dict]] = {"classifier": {"keep_best": 10}}
    requires: ClassVar[tuple[str, ...]] = _RESONANT["requires"]
    accepts: ClassVar[tuple[str, ...]] = _RESONANT["accepts"]
    input_defaults: ClassVar[dict[str, str]] = _RESONANT["input_defaults"]
    default_features: ClassVar[tuple[str, ...]] = DIJET_FEATURES
    default_folds: ClassVar[int] = 5

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
        folds: int | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(classifier, hidden, ensemble, folds=folds, training=training, seed=seed, device=device)
        if oversampling < 1:
            raise ConfigurationError(f"oversampling must be >= 1, got {oversampling}")
        self._set_flow(flow_type, transforms, flow_hidden, feature_transforms)
        self.oversampling = oversampling

    def _build(self) -> None:
        super()._build()
        self.density_ = self._new_density()

    def _modules(self) -> dict[str, nn.Module]:
        return {"classifiers": self.classifiers_, "density": self.density_}

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        """Fit the sideband flow, sample the signal region and train data vs samples there."""
        self._train_flow_then_classifier(data, self._sample_masses(data), checkpoint_dir)

    def _train_flow_then_classifier(
        self, data: TrainingData, conditions: np.ndarray, checkpoint_dir: str | Path | None
    ) -> None:
        """Flow on the sidebands / control region, one sample per row of ``conditions``, then the classifier."""
        flow = self._fit_density(self.density_, data.x_sb, data.m_sb, "flow", 1, checkpoint_dir)
        self._fit_on_template(data, self._template_samples(flow, conditions), checkpoint_dir)


class Generate(CATHODE):
    """Non-resonant Generate: CATHODE with context variables ``c`` (default HT, MET) in place of ``mjj``.

    A conditional flow ``p(x | c)`` is trained in the control region (the events without the boolean
    ``signal_flag``), sampled at the context values of the signal-region events (``oversampling`` times each),
    and a classifier of signal-region data vs samples is the score (input columns: the features).

    Inputs: ``signal_flag``, ``context`` (default ``ht, met``). Default features: the ``nonresonant`` set.

    References:
        Bai, Mastandrea, Nachman, "Non-resonant Anomaly Detection with Background Extrapolation", arXiv:2311.12924.
    """

    method: ClassVar[str] = "generate"
    requires: ClassVar[tuple[str, ...]] = ("signal_flag",)
    accepts: ClassVar[tuple[str, ...]] = ("context",)
    input_defaults: ClassVar[dict[str, tuple[str, ...]]] = {"context": FEATURE_SETS["context"]}
    default_features: ClassVar[tuple[str, ...]] = NONRESONANT_FEATURES

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        """Fit ``p(x | c)`` in the control region, sample it in the signal region, train data vs samples."""
        rng = np.random.default_rng([self.seed, 17])
        conditions = data.m_sr[rng.integers(0, len(data.m_sr), self.oversampling * len(data.m_sr))]
        self._train_flow_then_classifier(data, conditions, checkpoint_dir)

    def background_template(self, simulation: Table, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The background Generate predicts for events with the context values ``context`` ``[N, k]`` (the
        columns of :attr:`conditions_`): one flow sample per row, weight 1, as ``(features, weights)`` (rows
        with a non-finite sample dropped). ``simulation`` is not used: Generate needs no simulation."""
        return _finite(self.sample(np.asarray(context, dtype=np.float32)))


class _LatentClassifierScore(nn.Module):
    """Raw ``[x, m]`` -> flow latent coordinates -> classifier probability."""

    def __init__(self, density: ConditionalDensity, classifier: nn.Module) -> None:
        super().__init__()
        self.density = density
        self.classifier = classifier

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.density.latent(inputs[:, :-1], inputs[:, -1:]))


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
    _score_reads_condition: ClassVar[bool] = True

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        """Fit the sideband flow, map signal-region data to its latent space and train data vs normal samples."""
        self._fit_density(self.density_, data.x_sb, data.m_sb, "flow", 1, checkpoint_dir)
        with torch.no_grad():
            latent = self.density_.latent(torch.as_tensor(data.x_sr), torch.as_tensor(data.m_sr)).numpy()
        shape = (self.oversampling * len(latent), latent.shape[1])
        normal = np.random.default_rng([self.seed, 13]).standard_normal(shape).astype(np.float32)
        x = np.concatenate([latent, normal])
        labels = np.concatenate([np.ones(len(latent)), np.zeros(len(normal))])
        self._fit_classifiers(x, labels, checkpoint_dir)

    def _scoring_module(self) -> nn.Module:
        self._check_fitted()
        return _LatentClassifierScore(self.density_, self.classifiers_[0]).eval()


class CURTAINs(CATHODE):
    """CURTAINs (flows for flows): sideband events carried into the signal region by a learned, mass-conditioned
    transport; a classifier of signal-region data vs the carried events is the score (as in CATHODE).

    A conditional flow ``p_SB(x | m)`` is fitted on the sidebands (as CATHODE's). On top of it a transport
    ``T(x | m_data, m_flow)``, an invertible flow transform conditioned on two masses and started at the identity,
    is trained by maximum likelihood on pairs of sideband events, each event's own mass ``m_data`` paired with the
    mass ``m_flow`` of another sideband event: ``log p(x | m_data) = log p_SB(T(x) | m_flow) + log |det dT/dx|``.
    The background template is made of real events: sideband events within one signal-region width of its edges,
    each carried from its own mass ``m`` to a mass ``m'`` drawn from a KDE of the signal-region masses
    (:meth:`carry`: ``T^-1(T(x | m, m) | m', m)``), ``oversampling`` template events per signal-region event.
    Both legs of the carry meet in the sideband flow at ``m``, so the flow's own mismodelling cancels: on a
    synthetic sample a classifier tells CATHODE's flow samples from the true signal-region background with AUC 0.69,
    the carried events with 0.50 (measured; applying ``T^-1`` alone gives 0.55). The template keeps what the
    flow smooths away; only the change with the mass is learned. :meth:`sample` draws from the sideband flow (the
    sideband closure check of ``coffea-ad train`` uses it).

    Networks: ``"flow"`` (the sideband flow and the transport) and ``"classifier"``. Arguments and inputs as for
    :class:`CATHODE`.

    References:
        Raine, Klein, Sengupta, Golling, "CURTAINs for your sliding window", arXiv:2203.09470;
        Sengupta, Klein, Raine, Golling, "CURTAINs Flows For Flows", arXiv:2305.04646.
    """

    method: ClassVar[str] = "curtains"

    def _build(self) -> None:
        super()._build()
        n = len(self.features_)
        transport = build_flow(self.flow_type, n, 2, self.transforms, self.flow_hidden)
        self.transport_ = _MassTransport(self.density_, start_at_identity(transport.transform))

    def _modules(self) -> dict[str, nn.Module]:
        return {"classifiers": self.classifiers_, "transport": self.transport_}

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        """Fit the sideband flow, the transport on sideband pairs, carry sideband events into the signal region
        and train data vs carried events there."""
        self._fit_density(self.density_, data.x_sb, data.m_sb, "flow", 1, checkpoint_dir)
        rng = np.random.default_rng([self.seed, 31])
        m_sb = data.m_sb[:, 0]
        pairs = np.stack([m_sb, m_sb[rng.permutation(len(m_sb))]], axis=1)
        self._train_network(
            "flow", self.transport_, negative_log_likelihood, [data.x_sb, pairs], name="transport", salt=5,
            checkpoint_dir=checkpoint_dir,
        )
        targets = self._sample_masses(data)
        lo, hi = self.inputs_["signal_region"]
        near = (m_sb >= lo - (hi - lo)) & (m_sb < hi + (hi - lo))
        if not near.any():
            raise ConfigurationError(
                f"curtains: no sideband event within {hi - lo:g} of the signal region [{lo:g}, {hi:g}) to carry into it"
            )
        source = rng.choice(np.flatnonzero(near), size=len(targets))
        self._fit_on_template(data, self.carry(data.x_sb[source], m_sb[source], targets), checkpoint_dir)

    def carry(self, x: np.ndarray, m_from: np.ndarray, m_to: np.ndarray) -> np.ndarray:
        """Events ``x`` (raw features) at the masses ``m_from`` carried to the masses ``m_to`` by the transport
        (``T^-1(T(x | m_from, m_from) | m_to, m_from)``)."""
        self._check_fitted()
        m_from = np.array(m_from, np.float32).reshape(-1, 1)
        m_to = np.array(m_to, np.float32).reshape(-1, 1)
        out = []
        for start in range(0, len(m_from), 65536):
            rows = slice(start, start + 65536)
            moved = self.transport_.carry(torch.as_tensor(np.array(x[rows], np.float32)),
                                          torch.as_tensor(m_from[rows]), torch.as_tensor(m_to[rows]))
            out.append(moved.numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.features_)), np.float32)


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
    data (``flow_sr``) and on the sidebands (``flow``, interpolated into the signal region). Input columns:
    features + [mass]. Arguments as for :class:`CATHODE`'s flow; the network ``"flow"``'s training settings
    apply to both flows. Inputs: ``signal_region``, ``mass`` (default ``mjj``).

    References:
        Nachman, Shih, "Anomaly Detection with Density Estimation", arXiv:2001.04990.
    """

    method: ClassVar[str] = "anode"
    networks: ClassVar[tuple[str, ...]] = ("flow",)
    requires: ClassVar[tuple[str, ...]] = _RESONANT["requires"]
    accepts: ClassVar[tuple[str, ...]] = _RESONANT["accepts"]
    input_defaults: ClassVar[dict[str, str]] = _RESONANT["input_defaults"]
    default_features: ClassVar[tuple[str, ...]] = DIJET_FEATURES
    default_folds: ClassVar[int] = 5
    _score_reads_condition: ClassVar[bool] = True

    def __init__(
        self,
        flow_type: str = "maf",
        transforms: int = 4,
        flow_hidden: Sequence[int] = (64, 64),
        feature_transforms: Mapping[str, str] | None = None,
        *,
        folds: int | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(folds=folds, training=training, seed=seed, device=device)
        self._set_flow(flow_type, transforms, flow_hidden, feature_transforms)

    def _build(self) -> None:
        self.density_ = self._new_density()
        self.density_sr_ = self._new_density()

    def _modules(self) -> dict[str, nn.Module]:
        return {"density": self.density_, "density_sr": self.density_sr_}

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        """Fit ``p_SB(x | m)`` on the sidebands and ``p_SR(x | m)`` on the signal region."""
        self._fit_density(self.density_, data.x_sb, data.m_sb, "flow", 1, checkpoint_dir)
        self._fit_density(self.density_sr_, data.x_sr, data.m_sr, "flow_sr", 2, checkpoint_dir)

    def _scoring_module(self) -> nn.Module:
        self._check_fitted()
        return _LogDensityRatio(self.density_sr_, self.density_).eval()


class _ResidualDensity(nn.Module):
    """R-ANODE's signal-region density ``w p_sig(x | m) + (1 - w) p_bkg(x | m)``: the background density (the
    sideband flow, interpolated) frozen; the signal density and the signal fraction ``w`` learned."""

    def __init__(self, background: ConditionalDensity, signal: ConditionalDensity, signal_fraction: float) -> None:
        super().__init__()
        self.background = background
        self.signal = signal
        self.signal_logit = nn.Parameter(torch.logit(torch.tensor(float(signal_fraction))))

    def fit_preprocessing(self, x: np.ndarray, c: np.ndarray) -> None:
        """The signal density's own preprocessing from the signal-region rows; the background stays frozen."""
        self.background.requires_grad_(False)
        self.signal.fit_preprocessing(x, c)

    @property
    def signal_fraction(self) -> float:
        return float(torch.sigmoid(self.signal_logit.detach()))

    def log_prob(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        log_w = nn.functional.logsigmoid(self.signal_logit)
        log_background = nn.functional.logsigmoid(-self.signal_logit)
        return torch.logaddexp(log_w + self.signal.log_prob(x, c), log_background + self.background.log_prob(x, c))


class RANODE(ANODE):
    """R-ANODE: ANODE whose signal-region model is a mixture with the background fixed, so that its flow learns
    the signal alone. The sideband flow ``p_bkg(x | m)`` is trained and interpolated as in ANODE; the signal-region
    data then fit ``w p_sig(x | m) + (1 - w) p_bkg(x | m)`` with ``p_bkg`` frozen, a second flow ``p_sig`` and the
    signal fraction ``w`` (started at ``signal_fraction``) learned. The score is ``log p_sig - log p_bkg``. ANODE's
    signal-region flow must learn the whole background again and its ratio to the sideband flow is then a
    difference of two imperfect background models; R-ANODE's flow spends its capacity on what the background
    model does not explain, which is why it holds up at lower S/B. Arguments and inputs as for :class:`ANODE`.

    References:
        Das, Kasieczka, Shih, "Residual ANODE", arXiv:2312.11629.
    """

    method: ClassVar[str] = "ranode"

    def __init__(
        self,
        flow_type: str = "maf",
        transforms: int = 4,
        flow_hidden: Sequence[int] = (64, 64),
        feature_transforms: Mapping[str, str] | None = None,
        signal_fraction: float = 0.01,
        *,
        folds: int | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        if not 0.0 < signal_fraction < 1.0:
            raise ConfigurationError(f"signal_fraction must be in (0, 1), got {signal_fraction}")
        super().__init__(flow_type, transforms, flow_hidden, feature_transforms, folds=folds, training=training,
                         seed=seed, device=device)
        self.signal_fraction = signal_fraction

    def _build(self) -> None:
        super()._build()
        self.residual_ = _ResidualDensity(self.density_, self.density_sr_, self.signal_fraction)

    def _modules(self) -> dict[str, nn.Module]:
        return {"residual": self.residual_}

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        """Fit ``p_bkg(x | m)`` on the sidebands, then the mixture with it frozen on the signal region."""
        self._fit_density(self.density_, data.x_sb, data.m_sb, "flow", 1, checkpoint_dir)
        self._train_network(
            "flow", self.residual_, negative_log_likelihood, [data.x_sr, data.m_sr], name="flow_sr", salt=2,
            checkpoint_dir=checkpoint_dir,
        )
        logger.info("R-ANODE: fitted signal fraction in the signal region %.4f", self.residual_.signal_fraction)


class _MorphModel(nn.Module):
    """``log p_data(x | c) = log p_sim(T(x | c) | c) + log |det dT/dx|`` with the simulation density frozen.

    :class:`_MassTransport` conditions the morph on a pair of masses instead; the two context hooks say how.
    """

    def __init__(self, simulation: ConditionalDensity, morph: nn.Module) -> None:
        super().__init__()
        self.simulation = simulation
        self.morph = morph

    def fit_preprocessing(self, x: np.ndarray, c: np.ndarray) -> None:
        """The morph reuses the fitted simulation density's preprocessing; that density is frozen for training."""
        self.simulation.requires_grad_(False)

    def _morph_context(self, c: torch.Tensor) -> torch.Tensor:
        return self.simulation.context(c)

    def _density_context(self, c: torch.Tensor) -> torch.Tensor:
        return self.simulation.context(c)

    def log_prob(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        z, log_det = self.simulation.pre_x(x)
        y, ladj = self.morph(self._morph_context(c)).call_and_ladj(z)
        return self.simulation.flow(self._density_context(c)).log_prob(y) + ladj + log_det

    @torch.no_grad()
    def to_flow(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``T(x | c)``: raw events into the frozen flow's (preprocessed) space."""
        return self.morph(self._morph_context(c))(self.simulation.pre_x(x)[0])

    @torch.no_grad()
    def from_flow(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``T^-1(y | c)``: points of the flow's space back to raw events."""
        return self.simulation.pre_x.inverse(self.morph(self._morph_context(c)).inv(y))

    @torch.no_grad()
    def transport(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Move simulated events onto data: ``T^-1(x_sim | c)`` in raw coordinates."""
        return self.from_flow(self.simulation.pre_x(x)[0], c)


class _MassTransport(_MorphModel):
    """CURTAINs' transport: ``c = (m_data, m_flow)``; ``T(x | m_data, m_flow)`` takes an event at ``m_data`` to the
    sideband flow at ``m_flow``: ``log p(x | m_data) = log p_SB(T(x) | m_flow) + log |det dT/dx|``, the flow frozen.
    Both masses are standardised as the flow standardises its condition."""

    def _morph_context(self, c: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.simulation.context(c[:, :1]), self.simulation.context(c[:, 1:])], dim=-1)

    def _density_context(self, c: torch.Tensor) -> torch.Tensor:
        return self.simulation.context(c[:, 1:])

    @torch.no_grad()
    def carry(self, x: torch.Tensor, m_from: torch.Tensor, m_to: torch.Tensor) -> torch.Tensor:
        """Data events ``x`` at ``m_from`` carried to ``m_to`` (raw coordinates, masses ``[N, 1]``):
        ``T^-1(T(x | m_from, m_from) | m_to, m_from)``. Both legs meet in the sideband flow at ``m_from``, so
        where the flow misses the data, the first leg's error is undone by the second."""
        in_flow = self.to_flow(x, torch.cat([m_from, m_from], dim=-1))
        return self.from_flow(in_flow, torch.cat([m_to, m_from], dim=-1))


class Morph(_SidebandDensity, ClassifierMethod):
    """Non-resonant Morph: a flow that moves simulation onto data, learned in the control region.

    A conditional flow ``p_sim(x | c)`` is fitted to the whole simulation; on top of it a second conditional
    transform ``T(x | c)`` is trained on control-region data so that ``p_sim(T(x | c) | c) |det dT/dx|``
    is the data density; signal-region simulation moved by ``T^-1`` is the background template, and a
    classifier of signal-region data vs that template is the score (input columns: the features).
    Networks: ``"flow"`` (the simulation flow and the morph) and ``"classifier"``.

    Inputs: ``simulation``, ``signal_flag``, ``context`` (default ``ht, met``). Default features: the
    ``nonresonant`` set.

    References:
        Bai, Mastandrea, Nachman, arXiv:2311.12924; Golling et al., "Flow-enhanced transportation for anomaly
        detection" (FETA), arXiv:2212.11285.
    """

    method: ClassVar[str] = "morph"
    networks: ClassVar[tuple[str, ...]] = ("flow", "classifier")
    requires: ClassVar[tuple[str, ...]] = ("simulation", "signal_flag")
    accepts: ClassVar[tuple[str, ...]] = ("context",)
    input_defaults: ClassVar[dict[str, tuple[str, ...]]] = {"context": FEATURE_SETS["context"]}
    default_features: ClassVar[tuple[str, ...]] = NONRESONANT_FEATURES
    default_folds: ClassVar[int] = 5

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
        folds: int | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(classifier, hidden, ensemble, folds=folds, training=training, seed=seed, device=device)
        self._set_flow(flow_type, transforms, flow_hidden, feature_transforms)

    def _build(self) -> None:
        super()._build()
        self.density_ = self._new_density()
        n, k = len(self.features_), len(self.conditions_)
        morph = build_flow(self.flow_type, n, k, self.transforms, self.flow_hidden)
        self.morph_ = _MorphModel(self.density_, morph.transform)

    def _modules(self) -> dict[str, nn.Module]:
        return {"classifiers": self.classifiers_, "morph": self.morph_}

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        """Fit ``p_sim(x | c)``, the morph on control-region data, and data vs morphed simulation in the SR."""
        self._fit_density(self.density_, reference.x, reference.condition, "flow", 3, checkpoint_dir)
        self._fit_transports(data, reference, checkpoint_dir)
        self._fit_on_template(data, self.transport(reference.x_sr, reference.m_sr), checkpoint_dir)

    def _fit_transports(self, data: TrainingData, reference: TrainingData, checkpoint_dir: str | Path | None) -> None:
        """The transports against the frozen simulation flow: the morph ``T`` on control-region data."""
        self._train_network(
            "flow", self.morph_, negative_log_likelihood, [data.x_sb, data.m_sb], name="morph", salt=4,
            checkpoint_dir=checkpoint_dir,
        )

    def transport(self, x: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Simulated events ``x`` (raw features) with context ``context`` moved onto data."""
        self._check_fitted()
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        return self.morph_.transport(x, torch.as_tensor(np.asarray(context, dtype=np.float32))).numpy()

    def background_template(
        self, simulation: Table, context: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The background Morph predicts in a region: the simulated events of ``simulation`` (a table with the
        features and :attr:`conditions_` columns) moved onto data, weight 1, as ``(features, weights)`` (rows
        moved to a non-finite value dropped). ``context`` is not used: the events keep their own context."""
        simulation = open_table(simulation)
        x_sim = feature_matrix(simulation, self.features_)
        c_sim = feature_matrix(simulation, self.conditions_)
        return _finite(self.transport(x_sim, c_sim))


class FETA(Morph):
    """FETA (flow-enhanced transportation): the resonant Morph. Background simulation is moved onto data by a
    transport learned in the sidebands, and a classifier of signal-region data vs moved signal-region simulation
    is the score.

    A conditional flow ``p_sim(x | m)`` is fitted to the whole simulation (background only, all masses). Two
    transports, both started at the identity, are trained against it with the flow frozen: ``S(x | m)`` on the
    simulation itself and ``T(x | m)`` on the sideband data, so that ``p_sim(S(x | m) | m) |det dS/dx|`` is the
    simulation's density and ``p_sim(T(x | m) | m) |det dT/dx|`` the data's. The background template is the
    simulated signal-region events moved by ``T^-1(S(x | m) | m)``: both legs meet in the flow, so where the flow
    misses the simulation the error cancels, and only the difference between simulation and data is learned and
    interpolated into the signal region. (Moving the simulated events by ``T^-1`` alone, as :class:`Morph` does,
    treats them as samples of the flow; at the published LHC Olympics scale that made the template further from
    the true background than the raw simulation: classifier AUC 0.53 against 0.505.)

    Inputs: ``simulation`` (a background-only table with the features and the resonant variable),
    ``signal_region``, ``mass`` (default ``mjj``). Default features: the LHC Olympics set. Networks: ``"flow"``
    (the simulation flow and both transports) and ``"classifier"``.

    References:
        Golling, Klein, Mastandrea, Nachman, Raine, "Flow-enhanced transportation for anomaly detection",
        arXiv:2212.11285.
    """

    method: ClassVar[str] = "feta"
    requires: ClassVar[tuple[str, ...]] = ("simulation",)
    accepts: ClassVar[tuple[str, ...]] = _RESONANT["accepts"]
    input_defaults: ClassVar[dict[str, str]] = _RESONANT["input_defaults"]
    default_features: ClassVar[tuple[str, ...]] = DIJET_FEATURES

    def _build(self) -> None:
        super()._build()
        start_at_identity(self.morph_.morph)
        n, k = len(self.features_), len(self.conditions_)
        simulation_map = build_flow(self.flow_type, n, k, self.transforms, self.flow_hidden)
        self.simulation_map_ = _MorphModel(self.density_, start_at_identity(simulation_map.transform))

    def _modules(self) -> dict[str, nn.Module]:
        return {**super()._modules(), "simulation_map": self.simulation_map_}

    def _fit_transports(self, data: TrainingData, reference: TrainingData, checkpoint_dir: str | Path | None) -> None:
        """The simulation's transport ``S`` on the whole simulation, then the data's ``T`` on the sidebands."""
        self._train_network(
            "flow", self.simulation_map_, negative_log_likelihood, [reference.x, reference.condition],
            name="simulation_map", salt=6, checkpoint_dir=checkpoint_dir,
        )
        super()._fit_transports(data, reference, checkpoint_dir)

    def transport(self, x: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Simulated events ``x`` at the masses ``context`` (``[N, 1]``) moved onto data: ``T^-1(S(x | m) | m)``."""
        self._check_fitted()
        x = torch.as_tensor(np.array(x, dtype=np.float32))
        c = torch.as_tensor(np.array(context, dtype=np.float32))
        return self.morph_.from_flow(self.simulation_map_.to_flow(x, c), c).numpy()
