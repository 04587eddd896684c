"""``derive_seed``: the one way seeds are derived below a run's seed."""

from __future__ import annotations

import itertools

import pytest

from captum_smooth.core.random_state import derive_seed
from captum_smooth.dataset.explain import batch_seed


@pytest.mark.parametrize("seed", [0, 1, 7, 12345, 2**32, 2**62 - 1, 2**63 + 5])
@pytest.mark.parametrize("start", [0, 1, 64, 10**6])
def test_one_level_is_the_data_set_batch_seed(seed: int, start: int) -> None:
    # The data-set module can derive its batch seeds with derive_seed, values unchanged.
    assert derive_seed(seed, start) == batch_seed(seed, start)


def test_levels_chain_so_a_part_can_hand_its_seed_down() -> None:
    for seed, a, b in [(0, 0, 0), (3, 1, 2), (2**40, 7, 0)]:
        assert derive_seed(seed, a, b) == derive_seed(derive_seed(seed, a), b)
    assert derive_seed(5) == 5  # the empty path is the seed itself


def test_distinct_paths_give_distinct_seeds() -> None:
    # Prefixes and trailing zeros included: numpy's SeedSequence alone would give the same
    # stream for [s] and [s, 0], chaining the levels keeps them apart.
    paths = [path for length in range(4) for path in itertools.product(range(3), repeat=length)]
    for seed in (0, 1, 2**40):
        seeds = [derive_seed(seed, *path) for path in paths]
        assert len(set(seeds)) == len(paths)
    assert derive_seed(0, 1) != derive_seed(1, 1)


def test_range_and_negative_seeds() -> None:
    values = [derive_seed(s, i) for s in range(20) for i in range(20)]
    assert all(0 <= v < 2**63 for v in values)
    # A negative seed is read modulo 2**64, as torch.Generator.manual_seed reads it.
    assert derive_seed(-1, 3) == derive_seed(2**64 - 1, 3)


@pytest.mark.parametrize(
    ("seed", "path"), [(1.5, (0,)), (True, (0,)), (0, (-1,)), (0, (0.5,)), (0, (False,))]
)
def test_bad_values_are_named(seed: object, path: tuple) -> None:
    with pytest.raises(ValueError, match=r"seed|path"):
        derive_seed(seed, *path)  # type: ignore[arg-type]
