"""make_divisible against the rounding rule and the verified choice tables of SPEC §3.4."""

from __future__ import annotations

import pytest

from autonas_config import DEFAULT_RATIOS, make_divisible


def width_choices(original: int, ratios: tuple[float, ...], divisor: int) -> list[int]:
    """The choices a fresh layer of ``original`` width keeps after ``modify(ratios, divisor)``.

    A fresh layer offers every width ``1..original``; rounded widths above the original fall out,
    and the original always stays.
    """
    current = set(range(1, original + 1))
    rounded = {make_divisible(ratio * original, divisor) for ratio in ratios}
    return sorted((rounded & current) | {original})


# The AutoNAS default outcomes (ratios (0.5, 0.67, 1.0), divisor 32), verified on the reference.
DEFAULT_OUTCOMES = {
    3: [3],
    8: [8],
    16: [16],
    24: [24],
    32: [32],
    40: [32, 40],
    48: [32, 48],
    64: [32, 64],
    72: [64, 72],
    96: [64, 96],
    100: [64, 96, 100],
    128: [64, 96, 128],
    200: [96, 128, 192, 200],
    240: [128, 160, 240],
    256: [128, 160, 256],
    512: [256, 352, 512],
    576: [288, 384, 576],
    1000: [512, 672, 992, 1000],
}


@pytest.mark.parametrize(("original", "choices"), DEFAULT_OUTCOMES.items())
def test_autonas_default_choices_match_the_verified_table(original: int, choices: list[int]) -> None:
    assert width_choices(original, DEFAULT_RATIOS, 32) == choices


def test_worked_example_ratios_04_to_1_divisor_16_on_96_channels() -> None:
    assert [make_divisible(r * 96, 16) for r in (0.4, 0.6, 0.8, 1.0)] == [48, 64, 80, 96]
    assert width_choices(96, (0.4, 0.6, 0.8, 1.0), 16) == [48, 64, 80, 96]


def test_none_divisor_returns_the_value_unchanged() -> None:
    assert make_divisible(37.3, None) == 37.3
    assert make_divisible(5, None, min_value=100) == 5


@pytest.mark.parametrize(
    ("value", "divisor", "expected"),
    [
        (48.0, 32, 64),  # exactly half way rounds up
        (100.0, 32, 96),  # below half way rounds down ...
        (16.0, 32, 32),  # ... but never below the divisor
        (1.0, 8, 8),
        (96.0, 32, 96),  # multiples stay
        (67.0, 8, 64),
        (76.8, 16, 80),
    ],
)
def test_rounds_half_up_to_a_multiple_of_at_least_the_divisor(value: float, divisor: int, expected: int) -> None:
    assert make_divisible(value, divisor) == expected


def test_never_rounds_down_by_more_than_ten_percent() -> None:
    # 0.67 * 512 = 343.04 rounds to 352 (nearest multiple of 32); 0.67 * 100 = 67 -> 64 (> 0.9 * 67).
    assert make_divisible(343.04, 32) == 352
    # 75 -> nearest multiple of 64 is 64, which is < 0.9 * 75 = 67.5, so one more divisor: 128.
    assert make_divisible(75, 64) == 128
    # 100 -> 64 with divisor 64 is < 90: bumped to 128.
    assert make_divisible(100, 64) == 128


def test_min_value_overrides_the_divisor_floor() -> None:
    assert make_divisible(3.0, 8, min_value=4) == 4
    assert make_divisible(3.0, 8) == 8
    assert make_divisible(30.0, 8, min_value=4) == 32


def test_result_is_an_int() -> None:
    result = make_divisible(64.0, 32)
    assert type(result) is int
    assert result == 64
