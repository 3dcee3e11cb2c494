"""The dijet function, its binned Poisson maximum-likelihood fit to an mjj spectrum, its goodness of fit
and the Fisher F-test that chooses its number of parameters.

f(x) = p0 (1 − x)^p1 / x^(p2 + p3 ln x + p4 ln²x), x = mjj / √s (√s = 13 TeV by default, mjj in GeV), in
events per GeV, with 3, 4 or 5 parameters counting the normalisation p0 (2, 3 or 4 shape parameters: the
3-parameter version has p3 = p4 = 0, the 4-parameter one p4 = 0). Expected bin yields are integrals of f
over the bin (8-point Gauss–Legendre per bin).

ln f = ln p0 + p1 ln(1 − x) − p2 ln x − p3 ln²x − p4 ln³x is linear in θ = (ln p0, p1, ..., p4), so the fit
works in θ with the analytic gradient and Hessian of the Poisson negative log-likelihood (scipy's
``trust-exact``), starting from a weighted linear least-squares fit of ln(counts / width). The covariance is
the inverse Hessian at the minimum; it is reported for (p0, p1, ...) by the Jacobian of θ -> p.

Goodness of fit: the Poisson deviance of sparse bins is not χ²-distributed (on a spectrum with many bins of
a few events it gave p = 0.99999 for a fine fit), so every fit also reports Pearson's χ² of the fitted bins
merged, left to right and never across an excluded window, until each merged bin expects at least
``min_expected`` events (default 5), with ndf = merged bins − parameters: :attr:`DijetFit.chi2`,
:attr:`DijetFit.ndf` and :attr:`DijetFit.p_value`. The unmerged deviance is kept as
:attr:`DijetFit.deviance` for likelihood-ratio comparisons.

Parameter count (:func:`f_test`): start with 3 parameters and take the next larger function only while the
Fisher F-test says its improvement is significant at ``alpha`` (0.05), as in the CMS and ATLAS dijet searches:
F = (ΔD / Δn) / (χ²/ndf of the larger fit), with ΔD the drop of the deviance (a likelihood ratio, valid for
sparse bins) and χ²/ndf the merged-bin goodness of fit of the larger function; p = P(F(Δn, ndf) > F).

This fit of a parametric function is the one likelihood coffea_ad writes by hand: pyhf has no analytic
shapes. Its result becomes a pyhf template with the fit covariance as ``histosys`` (or ``shapesys``)
modifiers in :mod:`coffea_ad.stats.bumphunt`.

References:
    CMS dijet searches: arXiv:1911.03947, arXiv:2412.03747 (F-test between 2 to 4 shape parameters);
    ATLAS: arXiv:1910.08447; the function: UA2, CDF (arXiv:0812.4036). Merged-bin χ²: Baker, Cousins,
    Nucl. Instrum. Meth. 221 (1984) 437 (why the deviance of sparse bins needs care).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, stats

from coffea_ad.errors import ConfigurationError

__all__ = [
    "SQRT_S",
    "PARAMETER_COUNTS",
    "MIN_EXPECTED",
    "F_TEST_ALPHA",
    "DijetFit",
    "FTestStep",
    "dijet_function",
    "dijet_yields",
    "fit_dijet",
    "f_test",
    "merged_chi2",
]

logger = logging.getLogger(__name__)

#: Centre-of-mass energy of the LHC Run 2 in GeV.
SQRT_S = 13000.0

#: Numbers of parameters of the dijet function, counting the normalisation p0.
PARAMETER_COUNTS = (3, 4, 5)
#: Merged bins of the goodness of fit expect at least this many events.
MIN_EXPECTED = 5.0
#: Confidence of the F-test: a larger function is taken when the improvement has p < F_TEST_ALPHA (CMS: 0.05).
F_TEST_ALPHA = 0.05

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(8)


def _features(x: np.ndarray, n_parameters: int) -> np.ndarray:
    log_x = np.log(x)
    columns = [np.ones_like(x), np.log1p(-x), -log_x, -(log_x**2), -(log_x**3)]
    return np.stack(columns[:n_parameters], axis=-1)


def _check_edges(edges, sqrt_s: float) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ConfigurationError("mjj bin edges must be an increasing 1D array of at least two values")
    if edges[0] <= 0 or edges[-1] >= sqrt_s:
        raise ConfigurationError(
            f"mjj bin edges must lie in (0, sqrt_s = {sqrt_s:g}) GeV, got {edges[0]:g}..{edges[-1]:g}"
        )
    return edges


def _quadrature(edges: np.ndarray, sqrt_s: float, n_parameters: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin features ``(n_bins, 8, n_par)`` at the quadrature nodes and weights ``(n_bins, 8)`` in GeV."""
    half = 0.5 * np.diff(edges)[:, None]
    centre = 0.5 * (edges[1:] + edges[:-1])[:, None]
    mjj = centre + half * _NODES[None, :]
    return _features(mjj / sqrt_s, n_parameters), half * _WEIGHTS[None, :]


def _check_n_parameters(n_parameters: int) -> None:
    if n_parameters not in PARAMETER_COUNTS:
        raise ConfigurationError(
            f"n_parameters must be 3, 4 or 5 (the normalisation and 2 to 4 shape parameters), got {n_parameters}"
        )


def _parameters(theta: np.ndarray) -> np.ndarray:
    params = np.zeros(5)
    params[: theta.size] = theta
    params[0] = np.exp(theta[0])
    return params


def dijet_function(mjj: ArrayLike, parameters: ArrayLike, *, sqrt_s: float = SQRT_S) -> np.ndarray:
    """f(mjj) = p0 (1 − x)^p1 / x^(p2 + p3 ln x + p4 ln²x), x = mjj/√s (3 to 5 parameters; events per GeV)."""
    p = np.zeros(5)
    given = np.asarray(parameters, dtype=np.float64)
    if given.size not in PARAMETER_COUNTS:
        raise ConfigurationError(f"the dijet function takes 3, 4 or 5 parameters, got {given.size}")
    p[: given.size] = given
    x = np.asarray(mjj, dtype=np.float64) / sqrt_s
    log_x = np.log(x)
    return p[0] * (1 - x) ** p[1] / x ** (p[2] + p[3] * log_x + p[4] * log_x**2)


def _theta_yields(
    theta: np.ndarray, features: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected yields, their gradients ``(n_bins, n_par)`` and Hessians ``(n_bins, n_par, n_par)`` in θ."""
    density = weights * np.exp(features @ theta)
    mu = density.sum(axis=1)
    grad = np.einsum("bk,bkp->bp", density, features)
    hess = np.einsum("bk,bkp,bkq->bpq", density, features, features)
    return mu, grad, hess


@dataclass(frozen=True)
class FTestStep:
    """One comparison of the F-test: ``n_parameters`` -> ``n_parameters + 1``."""

    n_parameters: int
    deviance_drop: float
    f_statistic: float
    p_value: float
    accepted: bool

    def to_dict(self) -> dict:
        return {
            "from_n_parameters": self.n_parameters,
            "to_n_parameters": self.n_parameters + 1,
            "deviance_drop": self.deviance_drop,
            "F": self.f_statistic,
            "p_value": self.p_value,
            "larger_function_taken": self.accepted,
        }


@dataclass(frozen=True)
class DijetFit:
    """Result of :func:`fit_dijet`.

    ``theta``/``theta_covariance``: the fitted (ln p0, p1, p2, ...) and their covariance;
    ``parameters``/``covariance``: the same for (p0, p1, p2, ...). Goodness of fit: ``chi2`` is Pearson's χ² of
    the fitted bins merged to at least ``min_expected`` expected events, ``ndf`` = merged bins − parameters,
    ``p_value`` its χ² probability (NaN when ndf ≤ 0). ``deviance`` is the Poisson deviance (likelihood-ratio
    χ²) of the ``n_bins`` unmerged fitted bins. ``f_test`` lists the F-test comparisons that chose the
    parameter count (empty when it was given).
    """

    theta: np.ndarray
    theta_covariance: np.ndarray
    sqrt_s: float
    chi2: float
    ndf: int
    converged: bool
    deviance: float = float("nan")
    n_bins: int = 0
    min_expected: float = MIN_EXPECTED
    f_test: tuple[FTestStep, ...] = ()

    @property
    def n_parameters(self) -> int:
        return self.theta.size

    @property
    def parameters(self) -> np.ndarray:
        return _parameters(self.theta)[: self.n_parameters]

    @property
    def covariance(self) -> np.ndarray:
        jacobian = np.eye(self.n_parameters)
        jacobian[0, 0] = np.exp(self.theta[0])
        return jacobian @ self.theta_covariance @ jacobian.T

    @property
    def uncertainties(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))

    @property
    def p_value(self) -> float:
        """Goodness of fit: χ² probability of the merged-bin ``chi2`` for ``ndf`` (NaN when ndf ≤ 0)."""
        return float(stats.chi2.sf(self.chi2, self.ndf)) if self.ndf > 0 else float("nan")

    def yields(self, edges: ArrayLike) -> np.ndarray:
        """Expected events per bin for ``edges`` (GeV)."""
        return dijet_yields(edges, self.theta, sqrt_s=self.sqrt_s)

    def yield_uncertainties(self, edges: ArrayLike) -> np.ndarray:
        """One-standard-deviation uncertainty of the yields from the fit covariance (linear propagation)."""
        features, weights = _quadrature(_check_edges(edges, self.sqrt_s), self.sqrt_s, self.n_parameters)
        _, grad, _ = _theta_yields(self.theta, features, weights)
        return np.sqrt(np.einsum("bp,pq,bq->b", grad, self.theta_covariance, grad))

    def eigen_variations(self, edges: ArrayLike) -> list[tuple[np.ndarray, np.ndarray]]:
        """Yields at θ̂ ∓ √λ_k v_k for each eigenvector v_k of the covariance: ``[(down, up), ...]``.

        Independent variations whose quadratic sum reproduces the full covariance, correlations included.
        """
        values, vectors = np.linalg.eigh(self.theta_covariance)
        variations = []
        for value, vector in zip(values, vectors.T, strict=True):
            shift = np.sqrt(max(value, 0.0)) * vector
            down = dijet_yields(edges, self.theta - shift, sqrt_s=self.sqrt_s)
            up = dijet_yields(edges, self.theta + shift, sqrt_s=self.sqrt_s)
            variations.append((down, up))
        return variations

    def to_dict(self) -> dict:
        return {
            "function": "p0 (1-x)^p1 / x^(p2 + p3 ln x + p4 ln^2 x), x = mjj/sqrt_s",
            "n_parameters": self.n_parameters,
            "parameter_choice": "F-test" if self.f_test else "fixed",
            "f_test": [step.to_dict() for step in self.f_test],
            "sqrt_s_GeV": self.sqrt_s,
            "parameters": self.parameters.tolist(),
            "uncertainties": self.uncertainties.tolist(),
            "covariance": self.covariance.tolist(),
            "chi2": self.chi2,
            "ndf": self.ndf,
            "p_value": self.p_value,
            "goodness_of_fit": f"Pearson chi2 of the fitted bins merged to >= {self.min_expected:g} expected events",
            "deviance": self.deviance,
            "n_fitted_bins": self.n_bins,
            "converged": self.converged,
        }


def dijet_yields(edges: ArrayLike, theta: ArrayLike, *, sqrt_s: float = SQRT_S) -> np.ndarray:
    """Expected events per bin of the dijet function for θ = (ln p0, p1, p2, ...)."""
    theta = np.asarray(theta, dtype=np.float64)
    features, weights = _quadrature(_check_edges(edges, sqrt_s), sqrt_s, theta.size)
    return (weights * np.exp(features @ theta)).sum(axis=1)


def merged_chi2(
    observed: ArrayLike, expected: ArrayLike, *, mask: ArrayLike | None = None, min_expected: float = MIN_EXPECTED
) -> tuple[float, int]:
    """Pearson's χ² of bins merged to at least ``min_expected`` expected events: ``(chi2, merged_bins)``.

    The bins selected by ``mask`` are merged left to right within each run of consecutive selected bins (never
    across an excluded window); a run's remainder below ``min_expected`` joins the run's last merged bin.
    """
    observed = np.asarray(observed, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    selected = np.ones(observed.size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if not min_expected > 0:
        raise ConfigurationError(f"min_expected must be positive, got {min_expected:g}")
    groups: list[list[float]] = []
    run: list[list[float]] = []
    current = [0.0, 0.0]
    for index in range(observed.size + 1):
        if index == observed.size or not selected[index]:
            if current[1] > 0:
                if run:
                    run[-1] = [run[-1][0] + current[0], run[-1][1] + current[1]]
                else:
                    run.append(current)
            groups.extend(run)
            run, current = [], [0.0, 0.0]
            continue
        current = [current[0] + observed[index], current[1] + expected[index]]
        if current[1] >= min_expected:
            run.append(current)
            current = [0.0, 0.0]
    if not groups:
        return 0.0, 0
    n, mu = np.array(groups).T
    return float(np.sum((n - mu) ** 2 / mu)), int(n.size)


def _start(counts: np.ndarray, edges: np.ndarray, sqrt_s: float, n_parameters: int) -> np.ndarray:
    """Weighted least squares of ln(counts/width) on the features at the bin centres (bins with counts)."""
    filled = counts > 0
    centres = 0.5 * (edges[1:] + edges[:-1])[filled]
    design = _features(centres / sqrt_s, n_parameters)
    target = np.log(counts[filled] / np.diff(edges)[filled])
    sqrt_w = np.sqrt(counts[filled])
    theta, *_ = np.linalg.lstsq(design * sqrt_w[:, None], target * sqrt_w, rcond=None)
    return theta


def _check_counts(counts: ArrayLike, edges: np.ndarray, mask: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (edges.size - 1,):
        raise ConfigurationError(f"counts has {counts.size} bins but the edges define {edges.size - 1}")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ConfigurationError("mjj counts must be finite and non-negative")
    selected = np.ones(counts.size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if selected.shape != counts.shape:
        raise ConfigurationError(f"mask has {selected.size} entries, the histogram has {counts.size} bins")
    return counts, selected


def fit_dijet(
    counts: ArrayLike,
    edges: ArrayLike,
    *,
    n_parameters: int = 4,
    mask: ArrayLike | None = None,
    sqrt_s: float = SQRT_S,
    min_expected: float = MIN_EXPECTED,
) -> DijetFit:
    """Fit the dijet function with ``n_parameters`` (3, 4 or 5, counting p0) to binned mjj counts with a Poisson
    likelihood; the goodness of fit merges bins to ``min_expected`` expected events (see :func:`merged_chi2`).

    ``mask`` (booleans per bin) selects the bins that enter the fit, e.g. the sidebands of a window.
    :func:`f_test` chooses the number of parameters.
    """
    _check_n_parameters(n_parameters)
    edges = _check_edges(edges, sqrt_s)
    counts, selected = _check_counts(counts, edges, mask)
    n_fit = int(np.sum(selected & (counts > 0)))
    if n_fit <= n_parameters:
        raise ConfigurationError(
            f"the dijet fit needs more than {n_parameters} non-empty bins, got {n_fit}"
        )
    features, weights = _quadrature(edges, sqrt_s, n_parameters)
    features, weights, n = features[selected], weights[selected], counts[selected]

    filled = n > 0

    def deviance(theta):
        # 2 (NLL − NLL of the saturated model): O(ndf) at the minimum, so the optimizer keeps full precision
        mu, _, _ = _theta_yields(theta, features, weights)
        return 2.0 * float(np.sum(mu - n) + np.sum(n[filled] * np.log(n[filled] / mu[filled])))

    def gradient(theta):
        mu, grad, _ = _theta_yields(theta, features, weights)
        return 2.0 * ((1 - n / mu)[:, None] * grad).sum(axis=0)

    def hessian(theta):
        mu, grad, hess = _theta_yields(theta, features, weights)
        return 2.0 * (np.einsum("b,bpq->pq", 1 - n / mu, hess) + np.einsum("b,bp,bq->pq", n / mu**2, grad, grad))

    start = _start(np.where(selected, counts, 0.0), edges, sqrt_s, n_parameters)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            result = optimize.minimize(
                deviance, start, jac=gradient, hess=hessian, method="trust-exact",
                options={"gtol": 1e-6, "maxiter": 200},
            )
        except ValueError as error:  # the optimizer stepped where the function overflows: too few events
            raise ConfigurationError(
                f"the dijet fit failed on {int(n.sum())} events in {n_fit} filled bins ({error}); "
                "use fewer parameters or a wider mjj range"
            ) from error
    theta = result.x
    # A fit that ran away (a few events) overflows below: it is reported as not converged, with an infinite
    # chi2 and p = 0, so the bump hunt flags it; numpy's overflow warnings would only repeat that.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # the Hessian of the deviance is twice that of the negative log-likelihood
        information = 0.5 * hessian(theta)
        try:
            covariance = np.linalg.inv(information)
        except np.linalg.LinAlgError:
            covariance = np.linalg.pinv(information)
        # trust-exact may stop on rounding ("bad approximation") at the minimum: judge by the Newton decrement
        step = covariance @ (0.5 * gradient(theta))
        converged = bool(result.success) or float(0.5 * gradient(theta) @ step) < 1e-6
        expected = dijet_yields(edges, theta, sqrt_s=sqrt_s)
        chi2, merged = merged_chi2(counts, expected, mask=selected, min_expected=min_expected)
    if not converged:
        logger.warning("dijet fit did not converge: %s", result.message)
    return DijetFit(
        theta=theta,
        theta_covariance=0.5 * (covariance + covariance.T),
        sqrt_s=sqrt_s,
        chi2=chi2,
        ndf=merged - n_parameters,
        converged=converged,
        deviance=float(result.fun),
        n_bins=int(selected.sum()),
        min_expected=float(min_expected),
    )


def f_test(
    counts: ArrayLike,
    edges: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    alpha: float = F_TEST_ALPHA,
    max_parameters: int = PARAMETER_COUNTS[-1],
    sqrt_s: float = SQRT_S,
    min_expected: float = MIN_EXPECTED,
) -> DijetFit:
    """The dijet fit whose number of parameters a Fisher F-test chooses (3 up to ``max_parameters``).

    Starting from 3 parameters, the fit with one more is taken while its improvement is significant:
    F = (ΔD / 1) / (χ²/ndf of the larger fit), ΔD the drop of the Poisson deviance and χ²/ndf the merged-bin
    goodness of fit of the larger fit, p = P(F(1, ndf) > F) < ``alpha``. The search stops at the first
    insignificant step, or when the larger fit fails, does not converge, or has no degrees of freedom left.
    The returned fit lists the comparisons in ``f_test``.

    References:
        CMS, arXiv:1911.03947 and arXiv:2412.03747 (dijet function chosen by a Fisher F-test at 0.05).
    """
    _check_n_parameters(max_parameters)
    if not 0 < alpha < 1:
        raise ConfigurationError(f"the F-test confidence alpha must be in (0, 1), got {alpha:g}")
    options = dict(mask=mask, sqrt_s=sqrt_s, min_expected=min_expected)
    chosen = fit_dijet(counts, edges, n_parameters=PARAMETER_COUNTS[0], **options)
    steps: list[FTestStep] = []
    for n_parameters in range(PARAMETER_COUNTS[0] + 1, max_parameters + 1):
        try:
            larger = fit_dijet(counts, edges, n_parameters=n_parameters, **options)
        except ConfigurationError as error:
            logger.debug("F-test: no %d-parameter fit (%s)", n_parameters, error)
            break
        if not larger.converged or larger.ndf <= 0 or not larger.chi2 > 0:
            break
        drop = chosen.deviance - larger.deviance
        statistic = max(drop, 0.0) / (larger.chi2 / larger.ndf)
        p_value = float(stats.f.sf(statistic, 1, larger.ndf))
        accepted = p_value < alpha
        steps.append(FTestStep(chosen.n_parameters, float(drop), float(statistic), p_value, accepted))
        if not accepted:
            break
        chosen = larger
    return replace(chosen, f_test=tuple(steps))
