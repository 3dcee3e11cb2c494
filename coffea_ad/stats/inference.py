"""Discovery significance and CLs upper limits with ``pyhf.infer`` (asymptotic formulae).

Every model here is a ``pyhf.Model`` built from a validated spec (:mod:`coffea_ad.stats.workspace`); the
likelihood is pyhf's. pyhf's global backend is left as it is (numpy by default); nothing here changes it.

References:
    Asymptotic formulae for likelihood-based tests (q0, q~mu, Asimov data): Cowan, Cranmer, Gross, Vitells,
    arXiv:1007.1727. CLs: Read, J. Phys. G 28 (2002) 2693; Junk, hep-ex/9902006.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
import pyhf
from scipy.stats import norm

from coffea_ad.errors import ConfigurationError
from coffea_ad.stats.workspace import asimov_data, build_workspace, histogram_counts

__all__ = [
    "Significance",
    "UpperLimit",
    "counting_model",
    "model_significance",
    "discovery_significance",
    "upper_limit",
    "best_fit",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Significance:
    """Discovery test of the background-only hypothesis (test statistic q0).

    ``p0``/``z``: observed (or Asimov, when no data were given); ``expected_p0``/``expected_z``: median expected
    under the signal hypothesis at mu = 1.
    """

    p0: float
    z: float
    expected_p0: float
    expected_z: float

    def to_dict(self) -> dict:
        return {"p0": self.p0, "Z": self.z, "expected_p0": self.expected_p0, "expected_Z": self.expected_z}


@dataclass(frozen=True)
class UpperLimit:
    """CLs upper limit on the signal strength at ``1 - level`` confidence, with the expected band.

    ``expected`` holds the limits at −2σ, −1σ, median, +1σ, +2σ. ``scan``/``cls_observed``/``cls_expected``
    (shape (5, n)) are the tested POI values and their CLs values, sorted by POI, for plots.
    """

    observed: float
    expected: tuple[float, float, float, float, float]
    level: float
    scan: np.ndarray = field(repr=False)
    cls_observed: np.ndarray = field(repr=False)
    cls_expected: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "confidence_level": 1.0 - self.level,
            "observed": self.observed,
            "expected": dict(zip(("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma"), self.expected, strict=True)),
            "scan": {
                "mu": self.scan.tolist(),
                "cls_observed": self.cls_observed.tolist(),
                "cls_expected": self.cls_expected.tolist(),
            },
        }


def _p_to_z(p: float) -> float:
    return float(norm.isf(min(max(float(p), 0.0), 0.5)))


def counting_model(signal: Any, background: Any, *, background_uncertainty: Any = None) -> pyhf.pdf.Model:
    """Binned signal + background model: signal scaled by ``mu``; background optionally with a Poisson-
    constrained (``shapesys``) absolute uncertainty per bin. The same model as
    ``pyhf.simplemodels.uncorrelated_background`` when the uncertainty is given.
    """
    s, _ = histogram_counts(signal, "signal")
    b, _ = histogram_counts(background, "background")
    if s.shape != b.shape:
        raise ConfigurationError(f"signal has {s.size} bins but background has {b.size}")
    if np.any(b <= 0):
        raise ConfigurationError(
            f"background must be positive in every bin; bins {np.flatnonzero(b <= 0).tolist()} are not"
        )
    if np.any(s < 0) or not np.any(s > 0):
        raise ConfigurationError("signal must be non-negative with at least one positive bin")
    background_modifiers = []
    if background_uncertainty is not None:
        uncertainty, _ = histogram_counts(background_uncertainty, "background_uncertainty")
        if uncertainty.shape != b.shape:
            raise ConfigurationError(f"background_uncertainty has {uncertainty.size} bins, background has {b.size}")
        if np.any(uncertainty <= 0):
            raise ConfigurationError("background_uncertainty must be positive in every bin (or None for none)")
        background_modifiers.append({"type": "shapesys", "name": "uncorr_bkguncrt", "uncertainty": uncertainty})
    spec = {
        "poi": "mu",
        "channels": [
            {
                "name": "singlechannel",
                "samples": [
                    {"name": "signal", "yields": s, "modifiers": [{"type": "normfactor", "name": "mu"}]},
                    {"name": "background", "yields": b, "modifiers": background_modifiers},
                ],
            }
        ],
    }
    return build_workspace(spec).model()


def _main_data(model: pyhf.pdf.Model, observed: Any) -> np.ndarray:
    counts, _ = histogram_counts(observed, "observed")
    if counts.size != model.config.nmaindata:
        raise ConfigurationError(f"observed has {counts.size} bins, the model has {model.config.nmaindata}")
    if np.any(counts < 0):
        raise ConfigurationError("observed counts must be non-negative")
    return np.concatenate([counts, np.asarray(model.config.auxdata, dtype=np.float64)])


def _poi_bounds(model: pyhf.pdf.Model, upper: float | None) -> list[tuple[float, float]]:
    bounds = [tuple(b) for b in model.config.suggested_bounds()]
    if upper is not None:
        bounds[model.config.poi_index] = (0.0, float(upper))
    return bounds


def model_significance(model: pyhf.pdf.Model, data: ArrayLike, *, poi_upper_bound: float | None = None) -> Significance:
    """Observed and expected discovery significance of ``model`` for ``data`` (main + auxiliary data).

    ``poi_upper_bound`` widens the POI range when the best fit could exceed the model's default bound.

    References:
        Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727 (q0 and its asymptotic distribution).
    """
    p0, expected = pyhf.infer.hypotest(
        0.0,
        np.asarray(data, dtype=np.float64),
        model,
        test_stat="q0",
        return_expected=True,
        par_bounds=_poi_bounds(model, poi_upper_bound),
    )
    p0, expected = float(p0), float(expected)
    return Significance(p0=p0, z=_p_to_z(p0), expected_p0=expected, expected_z=_p_to_z(expected))


def discovery_significance(
    signal: Any,
    background: Any,
    *,
    background_uncertainty: Any = None,
    observed: Any = None,
) -> Significance:
    """Discovery significance (p0, Z) of binned signal and background yields.

    Without ``observed`` the Asimov data set s + b is used, so that for one bin without background
    uncertainty ``z`` equals sqrt(2((s+b) ln(1+s/b) − s)). ``background_uncertainty`` (absolute, per bin)
    adds a Poisson-constrained nuisance parameter per bin.

    References:
        Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727 (the Asimov significance).
    """
    model = counting_model(signal, background, background_uncertainty=background_uncertainty)
    if observed is None:
        data = asimov_data(model, mu=1.0)
    else:
        data = _main_data(model, observed)
    s, _ = histogram_counts(signal, "signal")
    b, _ = histogram_counts(background, "background")
    # the POI range must contain the best fit: allow ten times the largest per-bin excess over the signal
    with_signal = s > 0
    upper = max(10.0, 10.0 * float(np.max((data[: s.size][with_signal] - b[with_signal]) / s[with_signal])))
    return model_significance(model, data, poi_upper_bound=upper)


def _limit_bracket(model: pyhf.pdf.Model) -> float:
    """The upper end of the first bracket of the CLs root finding: the model's POI bound, or less for a strong
    signal: five times the smallest per-bin mu at which the signal reaches 2 sqrt(b) + 3 events (nominal
    nuisance parameters). A bracket far above the limit makes the fits at its end push the background's
    nuisance parameters to their bounds, where the minimiser fails (a 200 GeV H++ pair at 140 fb^-1)."""
    poi = model.config.poi_index
    bound = float(model.config.suggested_bounds()[poi][1])
    nominal = np.asarray(model.config.suggested_init(), dtype=np.float64)
    background_only, with_signal = nominal.copy(), nominal.copy()
    background_only[poi], with_signal[poi] = 0.0, 1.0
    b = np.asarray(model.expected_actualdata(background_only), dtype=np.float64)
    s = np.asarray(model.expected_actualdata(with_signal), dtype=np.float64) - b
    has_signal = s > 0
    if not has_signal.any():
        return bound
    return min(bound, 5.0 * float(np.min((2.0 * np.sqrt(np.maximum(b[has_signal], 0.0)) + 3.0) / s[has_signal])))


def upper_limit(
    model: pyhf.pdf.Model,
    data: ArrayLike,
    *,
    level: float = 0.05,
    scan: ArrayLike | None = None,
    rtol: float = 1e-3,
) -> UpperLimit:
    """CLs upper limit on the POI at ``1 - level`` confidence (q~mu test statistic), with the expected band.

    ``scan`` (POI values) gives a fixed grid with linear interpolation; without it pyhf's TOMS 748 root
    finding (relative tolerance ``rtol``) is used and the points it tested are returned for plots.

    References:
        Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727 (q~mu); Read, J. Phys. G 28 (2002) 2693 (CLs).
    """
    if not 0 < level < 1:
        raise ConfigurationError(f"level must be in (0, 1), got {level:g}")
    data = np.asarray(data, dtype=np.float64)
    if scan is not None:
        scan = np.asarray(scan, dtype=np.float64)
        if scan.ndim != 1 or scan.size < 2 or np.any(np.diff(scan) <= 0) or scan[0] < 0:
            raise ConfigurationError("scan must be an increasing array of at least two non-negative POI values")
    intervals = pyhf.infer.intervals.upper_limits
    if scan is not None:
        observed, expected, (tested, results) = intervals.upper_limit(
            data, model, scan=scan, level=level, return_results=True, test_stat="qtilde"
        )
    else:
        # pyhf halves the lower bracket until every CLs is above the level (CLs is 0/0 at exactly mu = 0)
        # and doubles the upper one until every CLs is below it: give the POI room for that
        high = _limit_bracket(model)
        observed, expected, (tested, results) = intervals.toms748_scan(
            data,
            model,
            0.01 * high,
            high,
            level=level,
            rtol=rtol,
            from_upper_limit_fn=True,
            test_stat="qtilde",
            par_bounds=_poi_bounds(model, 1000.0 * high),
        )
    tested = np.asarray(tested, dtype=np.float64)
    order = np.argsort(tested)
    cls_obs = np.array([float(r[0]) for r in results])[order]
    cls_exp = np.array([[float(v) for v in r[1]] for r in results])[order].T
    limit = UpperLimit(
        observed=float(observed),
        expected=tuple(float(e) for e in expected),
        level=level,
        scan=tested[order],
        cls_observed=cls_obs,
        cls_expected=cls_exp,
    )
    logger.info("CLs upper limit: observed %.4g, expected %.4g", limit.observed, limit.expected[2])
    return limit


def best_fit(model: pyhf.pdf.Model, data: ArrayLike) -> np.ndarray:
    """Maximum-likelihood parameters of ``model`` for ``data`` (main + auxiliary data), in pyhf's order."""
    return np.asarray(pyhf.infer.mle.fit(np.asarray(data, dtype=np.float64), model), dtype=np.float64)
