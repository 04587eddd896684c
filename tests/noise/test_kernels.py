"""Tests of the input-noise kernels: moments, laws, supports, randomness plumbing, registry.

Statistical tolerances come from the sample count: with ``n`` i.i.d. draws of a unit-variance
law, the sample mean has standard error ``1 / sqrt(n)`` and the sample std about
``sqrt((kurtosis - 1) / (4 n))``; the bounds are 5 standard errors. Laws are checked with the
Kolmogorov-Smirnov statistic against the analytic CDF, below ``1.63 / sqrt(n)`` (the 1 % level).
Seeds are fixed, so every run is the same run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_smooth.noise import _kernel_base as kernel_base
from captum_smooth.noise import kernels as kernels_module
from captum_smooth.noise.kernels import (
    KERNELS,
    BumpKernel,
    CosineKernel,
    EpanechnikovKernel,
    GaussianKernel,
    Kernel,
    LaplaceKernel,
    StudentTKernel,
    TabulatedKernel,
    TriangularKernel,
    UniformKernel,
    get_kernel,
    kernel_names,
)

N = 200_000
KS_LIMIT = 1.63 / math.sqrt(N)


# ----------------------------------------------------------------------------- analytic laws


def _quadrature_moments(density, half_width: float) -> tuple[float, float]:
    """Variance and kurtosis of a symmetric density on [-half_width, half_width]."""
    t = np.linspace(-half_width, half_width, 100_001)
    f = density(t)
    mass = np.trapezoid(f, t)
    var = np.trapezoid(t**2 * f, t) / mass
    return var, np.trapezoid(t**4 * f, t) / mass / var**2


def _bump_raw(t: np.ndarray) -> np.ndarray:
    inside = np.abs(t) < 1
    return np.where(inside, np.exp(-1.0 / np.where(inside, 1.0 - t**2, 1.0)), 0.0)


def _bump_cdf(x: np.ndarray) -> np.ndarray:
    var, _ = _quadrature_moments(_bump_raw, 1.0)
    r = np.linspace(-1.0, 1.0, 100_001)
    f = _bump_raw(r)
    cdf = np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) / 2 * np.diff(r))])
    return np.interp(x * math.sqrt(var), r, cdf / cdf[-1])


def _cosine_raw(t: np.ndarray) -> np.ndarray:
    return np.pi / 4 * np.cos(np.pi * t / 2)


def _t3_cdf(x: np.ndarray) -> np.ndarray:
    # Unit-std samples are x = T / sqrt(3) with T ~ t_3, whose CDF in terms of T / sqrt(3) is
    # 1/2 + (z / (1 + z^2) + arctan z) / pi.
    return 0.5 + (x / (1 + x**2) + np.arctan(x)) / np.pi


_A_UNI, _A_TRI, _A_EPA = math.sqrt(3), math.sqrt(6), math.sqrt(5)
_A_COS = 1 / math.sqrt(1 - 8 / math.pi**2)
_B_LAP = 1 / math.sqrt(2)

# name -> (kernel factory, analytic CDF of the unit-std law or None, kurtosis)
CASES = {
    "gaussian": (
        GaussianKernel,
        lambda x: 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),
        3.0,
    ),
    "laplace": (
        LaplaceKernel,
        lambda x: np.where(x < 0, 0.5 * np.exp(x / _B_LAP), 1 - 0.5 * np.exp(-x / _B_LAP)),
        6.0,
    ),
    "uniform": (UniformKernel, lambda x: np.clip((x / _A_UNI + 1) / 2, 0, 1), 9 / 5),
    "triangular": (
        TriangularKernel,
        lambda x: np.where(x < 0, (1 + x / _A_TRI) ** 2 / 2, 1 - (1 - x / _A_TRI) ** 2 / 2),
        12 / 5,
    ),
    "epanechnikov": (
        EpanechnikovKernel,
        lambda x: (2 + 3 * (x / _A_EPA) - (x / _A_EPA) ** 3) / 4,
        15 / 7,
    ),
    "cosine": (
        CosineKernel,
        lambda x: (1 + np.sin(np.pi * x / (2 * _A_COS))) / 2,
        _quadrature_moments(_cosine_raw, 1.0)[1],
    ),
    "bump": (BumpKernel, _bump_cdf, _quadrature_moments(_bump_raw, 1.0)[1]),
    # df = 10 for the std check: the sample std of t_3 has no finite variance.
    "student_t_10": (lambda: StudentTKernel(df=10), None, 3 + 6 / (10 - 4)),
}

BOUNDED = {
    "uniform": _A_UNI,
    "triangular": _A_TRI,
    "epanechnikov": _A_EPA,
    "cosine": _A_COS,
    "bump": 1 / math.sqrt(_quadrature_moments(_bump_raw, 1.0)[0]),
}


def _draw(kernel: Kernel, seed: int, n: int = N, dtype: torch.dtype = torch.float32) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    return kernel.sample((n,), generator=gen, dtype=dtype).double().numpy()


def _ks(samples: np.ndarray, cdf) -> float:
    x = np.sort(samples)
    f = cdf(x)
    i = np.arange(1, len(x) + 1)
    return float(max((i / len(x) - f).max(), (f - (i - 1) / len(x)).max()))


# ----------------------------------------------------------------------------- moments and laws


@pytest.mark.parametrize("name", list(CASES))
def test_zero_mean_unit_std(name: str) -> None:
    factory, _, kurtosis = CASES[name]
    x = _draw(factory(), seed=1)
    assert abs(x.mean()) < 5 / math.sqrt(N)
    assert abs(x.std() - 1) < 5 * math.sqrt((kurtosis - 1) / (4 * N))


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case[1] is not None])
def test_law_matches_analytic_cdf(name: str) -> None:
    factory, cdf, _ = CASES[name]
    assert _ks(_draw(factory(), seed=2), cdf) < KS_LIMIT


def test_ks_detects_a_wrong_scale() -> None:
    # The KS check has power: a Laplace drawn with scale 1 instead of 1/sqrt(2) fails it.
    x = _draw(LaplaceKernel(), seed=2) * math.sqrt(2)
    assert _ks(x, CASES["laplace"][1]) > 10 * KS_LIMIT


def test_student_t3_law_and_mean() -> None:
    x = _draw(StudentTKernel(df=3), seed=3)
    assert _ks(x, _t3_cdf) < KS_LIMIT
    assert abs(x.mean()) < 5 / math.sqrt(N)


@pytest.mark.parametrize("df", [2.5, 7.5, 40])
def test_student_t_any_real_df(df: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    x = _draw(StudentTKernel(df=df), seed=4)
    scale = math.sqrt((df - 2) / df)
    assert _ks(x, lambda v: stats.t.cdf(v / scale, df)) < KS_LIMIT


@pytest.mark.parametrize("name", list(BOUNDED))
def test_bounded_support(name: str) -> None:
    kernel = get_kernel(name)
    # The bump is tabulated: its support is exact for the sampled law, close to the true one.
    assert kernel.support == pytest.approx(BOUNDED[name], rel=1e-4)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        x = kernel.sample((N // 4,), generator=torch.Generator().manual_seed(5), dtype=dtype)
        assert float(x.abs().max()) <= kernel.support
        # The samples reach close to the edge (the bound is not vacuous).
        assert float(x.abs().max()) > 0.9 * kernel.support


@pytest.mark.parametrize("name", ["gaussian", "laplace", "student_t"])
def test_unbounded_support(name: str) -> None:
    assert get_kernel(name).support == math.inf


def _edge_uniform(size, generator, device, dtype):
    """The extreme values torch.rand can return, cycled over the requested shape."""
    one, half = torch.tensor(1.0, dtype=dtype), torch.tensor(0.5, dtype=dtype)
    edges = torch.stack(
        [
            torch.tensor(0.0, dtype=dtype),
            torch.nextafter(half, torch.tensor(0.0, dtype=dtype)),
            half,
            torch.nextafter(one, torch.tensor(0.0, dtype=dtype)),
            torch.nextafter(torch.tensor(0.0, dtype=dtype), one),
        ]
    )
    count = math.prod(size)
    return edges.repeat(count // len(edges) + 1)[:count].reshape(size).to(device)


@pytest.mark.parametrize("name", [*kernel_names()[1:], "two_step"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_extreme_uniforms_stay_finite_and_inside(monkeypatch, name: str, dtype) -> None:
    kernel = _two_step() if name == "two_step" else get_kernel(name)
    # Every uniform a kernel draws goes through `_uniform`, wherever the kernel is defined.
    for module in (kernel_base, kernels_module):
        monkeypatch.setattr(module, "_uniform", _edge_uniform)
    x = kernel.sample((5, 7), dtype=dtype)
    assert torch.isfinite(x).all()
    assert float(x.abs().max()) <= kernel.support


# ----------------------------------------------------------------------------- randomness


@pytest.mark.parametrize("name", kernel_names())
def test_seeds(name: str) -> None:
    kernel = get_kernel(name)

    def draw(seed: int) -> torch.Tensor:
        return kernel.sample((64, 3), generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))
    # A fresh object of the same kernel draws the same numbers.
    again = get_kernel(name).sample((64, 3), generator=torch.Generator().manual_seed(7))
    assert torch.equal(draw(7), again)


@pytest.mark.parametrize("name", kernel_names())
def test_global_rng_when_no_generator(name: str) -> None:
    kernel = get_kernel(name)
    state = torch.get_rng_state()
    try:
        torch.manual_seed(11)
        first = kernel.sample((50,))
        torch.manual_seed(11)
        assert torch.equal(kernel.sample((50,)), first)
    finally:
        torch.set_rng_state(state)


@pytest.mark.parametrize("name", kernel_names())
def test_generator_leaves_global_rng_alone(name: str) -> None:
    state = torch.get_rng_state()
    get_kernel(name).sample((50,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(0,), (1,), (17,), (4, 3, 5, 5)])
def test_gaussian_is_randn_bit_for_bit(shape, dtype) -> None:
    got = GaussianKernel().sample(shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    want = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", kernel_names()[1:])
def test_split_draws_continue_the_stream_on_cpu(name: str) -> None:
    kernel = get_kernel(name)
    whole = kernel.sample((7, 3), generator=torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    parts = torch.cat([kernel.sample((3, 3), generator=gen), kernel.sample((4, 3), generator=gen)])
    assert torch.equal(whole, parts)


# ----------------------------------------------------------------------------- shapes and dtypes


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(kernel_names()),
    shape=st.lists(st.integers(0, 5), max_size=4).map(tuple),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**31 - 1),
)
def test_shapes_and_dtypes(name: str, shape: tuple[int, ...], dtype, seed: int) -> None:
    kernel = get_kernel(name)
    x = kernel.sample(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    assert x.shape == torch.Size(shape)
    assert x.dtype == dtype
    assert x.device.type == "cpu"
    assert torch.isfinite(x).all()
    assert x.numel() == 0 or float(x.abs().max()) <= kernel.support


@pytest.mark.parametrize("name", kernel_names())
def test_default_dtype_and_shape_forms(name: str) -> None:
    kernel = get_kernel(name)
    assert kernel.sample((2, 3)).dtype == torch.float32
    assert kernel.sample(torch.Size([2, 3]), device="cpu").shape == (2, 3)
    assert kernel.sample([]).shape == ()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert kernel.sample((4,)).dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("name", kernel_names())
def test_bad_sample_arguments(name: str) -> None:
    kernel = get_kernel(name)
    with pytest.raises(TypeError, match="dtype"):
        kernel.sample((3,), dtype=torch.int64)
    with pytest.raises(ValueError, match="shape"):
        kernel.sample((3, -1))
    with pytest.raises(ValueError, match="shape"):
        kernel.sample((2.5,))


# ----------------------------------------------------------------------------- registry


def test_get_kernel_names_aliases_and_case() -> None:
    assert kernel_names() == list(KERNELS)
    assert set(kernel_names()) == {
        "gaussian",
        "laplace",
        "uniform",
        "triangular",
        "epanechnikov",
        "cosine",
        "student_t",
        "bump",
    }
    for name, cls in KERNELS.items():
        kernel = get_kernel(name)
        assert type(kernel) is cls
        assert kernel.name == name
        assert type(get_kernel(name.upper())) is cls
    assert isinstance(get_kernel("Normal"), GaussianKernel)
    assert isinstance(get_kernel("BOX"), UniformKernel)
    assert isinstance(get_kernel("t"), StudentTKernel)
    assert isinstance(get_kernel(" Student-T "), StudentTKernel)
    assert isinstance(get_kernel(LaplaceKernel), LaplaceKernel)


def test_get_kernel_passes_objects_through() -> None:
    kernel = StudentTKernel(df=5)
    assert get_kernel(kernel) is kernel

    class Rademacher:  # a user kernel that is no Kernel subclass: +-1, mean 0, std 1
        support = 1.0

        def sample(self, shape, *, generator=None, device=None, dtype=None):
            u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
            return torch.where(u < 0.5, -1.0, 1.0).to(u.dtype)

    user = Rademacher()
    assert get_kernel(user) is user


def test_get_kernel_errors_list_the_names() -> None:
    with pytest.raises(ValueError) as err:
        get_kernel("gauss")
    for name in [*kernel_names(), "normal", "box"]:
        assert name in str(err.value)
    with pytest.raises(TypeError, match="epanechnikov"):
        get_kernel(3.0)
    with pytest.raises(TypeError, match="kernel"):
        get_kernel(Kernel)  # abstract
    with pytest.raises(TypeError, match="kernel"):
        get_kernel(dict)

    class NoSupport:
        def sample(self, shape, **kwargs):
            return torch.zeros(shape)

    with pytest.raises(TypeError, match="laplace"):
        get_kernel(NoSupport())

    class NegativeSupport(NoSupport):
        support = -1.0

    with pytest.raises(ValueError, match="support"):
        get_kernel(NegativeSupport())


def test_student_t_df_validation() -> None:
    for bad in (2, 1, 0, -3, math.inf, math.nan):
        with pytest.raises(ValueError, match="df"):
            StudentTKernel(df=bad)
    for bad in (True, "3", None):
        with pytest.raises(TypeError, match="df"):
            StudentTKernel(df=bad)
    assert repr(StudentTKernel(df=4)) == "StudentTKernel(df=4)"
    assert repr(get_kernel("bump")) == "BumpKernel()"


# ----------------------------------------------------------------------------- tabulated kernels


def _two_step() -> TabulatedKernel:
    # Density 2 on |t| < 1/2 and 1 on 1/2 <= |t| <= 1: variance 1/4 after normalisation.
    return TabulatedKernel(lambda t: torch.where(t.abs() < 0.5, 2.0, 1.0), 1.0, name="two_step")


def _two_step_cdf(x: np.ndarray) -> np.ndarray:
    a = np.abs(x) / 2  # unit std = twice the raw std of 1/2
    half = np.where(a < 0.5, 2 / 3 * a, 1 / 3 + (np.minimum(a, 1) - 0.5) / 3)
    return 0.5 + np.sign(x) * half


def test_tabulated_user_density_gets_unit_std() -> None:
    kernel = _two_step()
    assert kernel.name == "two_step"
    assert kernel.scale == pytest.approx(2.0, rel=1e-3)
    assert kernel.support == pytest.approx(2.0, rel=1e-3)
    x = _draw(kernel, seed=6)
    assert abs(x.mean()) < 5 / math.sqrt(N)
    # Kurtosis of the two-step law: E t^4 = 7/80 raw, over (1/4)^2.
    assert abs(x.std() - 1) < 5 * math.sqrt((7 / 80 / (1 / 16) - 1) / (4 * N))
    assert _ks(x, _two_step_cdf) < KS_LIMIT
    assert float(np.abs(x).max()) <= kernel.support


def test_tabulated_triangle_matches_the_closed_form_kernel() -> None:
    kernel = TabulatedKernel(lambda t: (1 - t.abs()).clamp_min(0), 2.0)  # zero on 1 < |t| <= 2
    assert kernel.support == pytest.approx(2 * _A_TRI, rel=1e-4)
    x = _draw(kernel, seed=7, dtype=torch.float64)
    assert float(np.abs(x).max()) <= _A_TRI * (1 + 1e-3)
    assert _ks(x, CASES["triangular"][1]) < KS_LIMIT


def test_tabulated_zero_mass_near_the_origin() -> None:
    # A density that vanishes on |t| < 1/2: empty cells must be skipped, never produce NaN.
    kernel = TabulatedKernel(lambda t: (t.abs() >= 0.5).double(), 1.0, grid_size=64)
    x = kernel.sample((N,), generator=torch.Generator().manual_seed(8))
    assert torch.isfinite(x).all()
    # The trapezoid rule spreads the jump at 1/2 over the one cell below it.
    assert float(x.abs().min()) >= (0.5 - 1 / 64) * kernel.scale * (1 - 1e-6)
    assert abs(float(x.std()) - 1) < 0.01


@pytest.mark.parametrize(
    ("density", "support", "error", "match"),
    [
        (lambda t: (t > 0).double(), 1.0, ValueError, "symmetric"),
        (lambda t: -torch.ones_like(t), 1.0, ValueError, "non-negative"),
        (lambda t: torch.zeros_like(t), 1.0, ValueError, "zero"),
        (lambda t: 1 / t.abs(), 1.0, ValueError, "finite"),
        (lambda t: torch.ones(3), 1.0, ValueError, "shape"),
        (lambda t: torch.ones_like(t), math.inf, ValueError, "support"),
        (lambda t: torch.ones_like(t), 0.0, ValueError, "support"),
        (lambda t: torch.ones_like(t), "1", TypeError, "support"),
        ("not callable", 1.0, TypeError, "density"),
    ],
)
def test_tabulated_rejects_bad_densities(density, support, error, match) -> None:
    with pytest.raises(error, match=match):
        TabulatedKernel(density, support)
