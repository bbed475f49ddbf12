"""Hparam, ConcatHparam and DepthHparam semantics."""

import copy
import pickle

import pytest
import torch

from autonas_dynamic import ConcatHparam, DepthHparam, Hparam
from autonas_dynamic import hparam as hparam_module


def test_choices_sorted_unique_and_contain_original():
    hp = Hparam([8, 2, 4, 4], original=6)
    assert hp.choices == [2, 4, 6, 8]
    assert (hp.original, hp.active, hp.min, hp.max) == (6, 6, 2, 8)
    assert Hparam([3, 1, 2]).original == 3
    assert list(hp) == [2, 4, 6, 8]


def _state(hp):
    return hp.choices, hp.active, hp.original, hp.min, hp.max, list(hp), hp.is_configurable, repr(hp)


@pytest.mark.parametrize("width", [1, 7, 3072])
def test_an_hparam_made_from_a_range_behaves_as_one_made_from_its_list(width):
    """Layers pass their 1..width choices as a range, kept as such until a rule changes them."""
    made = [Hparam(range(1, width + 1), name="w"), Hparam(range(1, width + 1), original=width, name="w")]
    listed = Hparam(list(range(1, width + 1)), name="w")
    for hp in made:
        assert _state(hp) == _state(listed)
        assert (width in hp._choice_set, width + 1 in hp._choice_set, 0.5 in hp._choice_set) == (True, False, False)
        for target in (hp, listed):
            with pytest.raises(ValueError, match=r"value 0 is not allowed; choices are \[1"):
                target.active = 0
            with pytest.raises(
                ValueError, match=r"only shrink; \[" + str(width + 1) + r"\] are not in the current \[1"
            ):
                target.choices = [width, width + 1]
    ruled, other = made
    for hp in (ruled, listed):
        hp.restrict_to({width // 2, width, 2 * width})
    assert _state(ruled) == _state(listed) and ruled.choices == sorted({max(width // 2, 1), width})
    merged = Hparam(range(1, width + 1))
    merged &= Hparam([width, max(width - 1, 1)])
    assert merged.choices == sorted({width, max(width - 1, 1)})
    other.pin()
    assert (other.choices, other.is_configurable) == ([width], False)
    assert _state(pickle.loads(pickle.dumps(Hparam(range(1, width + 1))))) == _state(Hparam(range(1, width + 1)))
    assert Hparam(range(2, 9, 2), original=5).choices == [2, 4, 5, 6, 8]  # an original off the range is added
    assert Hparam(range(0), original=3).choices == [3]
    assert Hparam(range(9, 0, -3)).choices == [3, 6, 9]


def test_active_assignment_and_none_means_original():
    hp = Hparam(range(1, 5), name="out_channels")
    hp.active = 2
    assert hp.active == 2
    assert hp.active_slice == slice(0, 2)
    hp.active = None
    assert hp.active == 4


def test_value_outside_choices_names_hparam_value_and_choices():
    hp = Hparam([16, 32], name="out_channels")
    with pytest.raises(ValueError, match=r"'out_channels'.*64.*\[16, 32\]"):
        hp.active = 64


def test_choices_only_shrink_and_keep_original_and_active():
    hp = Hparam([1, 2, 3, 4], name="width")
    hp.choices = [2, 4]
    assert hp.choices == [2, 4]
    with pytest.raises(ValueError, match="only shrink"):
        hp.choices = [2, 3, 4]
    with pytest.raises(ValueError, match="original"):
        hp.choices = [2]
    hp.active = 2
    with pytest.raises(ValueError, match="active"):
        hp.choices = [4]


def test_configurable_flag_and_pinned_hparam():
    hp, other = Hparam([1, 2, 3]), Hparam([1, 2])
    assert hp.is_configurable
    ConcatHparam([hp, other])  # a concat input follows its concat
    assert not hp.is_configurable
    hp.active = 3  # same value: allowed
    with pytest.raises(ValueError, match="not configurable"):
        hp.active = 1
    with pytest.raises(ValueError, match="not configurable"):
        hp.choices = [3]
    with pytest.raises(RuntimeError), hp.held_at(1):
        assert hp.active == 1
        raise RuntimeError("the active value comes back anyway")
    assert hp.active == 3 and not hp.is_configurable
    with pytest.raises(ValueError, match="not configurable"):
        hp.active = 1  # still pinned after the context
    assert not Hparam([5]).is_configurable


def test_pin_keeps_the_original_as_the_only_choice():
    hp = Hparam([8, 16, 32], name="out_channels")
    hp.active = 8
    hp.pin()
    assert (hp.choices, hp.active, hp.is_configurable) == ([32], 32, False)
    with pytest.raises(ValueError, match="hparam 'out_channels': value 16 is not allowed"):
        hp.active = 16


def test_restrict_to_keeps_the_original_and_resets_a_dropped_active_value():
    hp = Hparam([8, 16, 24, 32])
    hp.active = 8
    hp.restrict_to({16, 24, 64})
    assert (hp.choices, hp.active) == ([16, 24, 32], 32)
    hp.active = 16
    hp.restrict_to({16})
    assert (hp.choices, hp.active) == ([16, 32], 16)
    follower, partner = Hparam([2, 4]), Hparam([2, 4])
    ConcatHparam([follower, partner])
    follower.restrict_to({4})  # a concat input's choices are its concat's to decide
    assert follower.choices == [2, 4]


def test_held_at_on_a_concat_input_moves_the_concat_and_restores_it():
    a, b = Hparam([2, 4]), Hparam([2, 4])
    concat = ConcatHparam([a, b])
    concat.active = 4
    with a.held_at(4):
        assert (a.active, concat.active) == (4, 6)
    assert (a.active, b.active, concat.active) == (2, 2, 4)
    with pytest.raises(ValueError, match="not allowed"), a.held_at(3):
        pass
    assert a.active == 2


def test_concat_of_equal_parts_that_are_concats_moves_the_innermost_inputs():
    """``cat([s, s, s])`` with ``s = cat([h, h])`` (a fused qkv over a chunked stream): one searched size."""
    half = Hparam([6, 12, 18, 24])
    stream = ConcatHparam([half, half])
    fused = ConcatHparam([stream, stream, stream])
    assert (fused.choices, stream.is_configurable) == ([36, 72, 108, 144], False)
    fused.active = 72
    assert (stream.active, half.active) == (24, 12)
    assert torch.equal(fused.active_slice, torch.cat([torch.arange(24) + offset for offset in (0, 48, 96)]))
    fused.active = 144
    assert (stream.active, half.active) == (48, 24)


def test_tuple_values_have_no_slice():
    hp = Hparam([(1, 1), (3, 3)], name="kernel_size")
    with pytest.raises(TypeError, match="kernel_size"):
        _ = hp.active_slice


def test_importance_sums_max_normalised_estimates():
    hp = Hparam(range(1, 4))
    assert hp.importance is None
    hp.register_importance(lambda: torch.tensor([1.0, 2.0, 4.0]))
    hp.register_importance(lambda: None)
    hp.register_importance(lambda: torch.tensor([10.0, 0.0, 5.0]))
    torch.testing.assert_close(hp.importance, torch.tensor([0.25 + 1.0, 0.5, 1.0 + 0.5]), rtol=1e-6, atol=1e-6)
    hp.register_importance(lambda: torch.ones(5))
    with pytest.raises(ValueError, match=r"shape \(5,\), expected \(3,\)"):
        _ = hp.importance


def test_unsortable_refuses_estimators():
    hp = Hparam(range(1, 4), name="num_channels")
    hp.make_unsortable()
    assert not hp.is_sortable and hp.importance is None
    with pytest.raises(RuntimeError, match="num_channels"):
        hp.register_importance(lambda: None)


def test_merge_intersects_choices_and_combines_estimators():
    def first():
        return torch.tensor([1.0, 0.0])

    def second():
        return torch.tensor([0.0, 1.0])

    a, b = Hparam([1, 2]), Hparam([2, 1])
    a.register_importance(first)
    b.register_importance(second)
    a.active = 1
    result = a
    result &= b
    assert result is a
    assert a.choices == [1, 2] and a.active == 1
    assert a._importance_estimators == [first, second]
    c = Hparam([2])
    a &= c
    assert a.choices == [2] and a.active == 2
    d = Hparam([1, 2])
    d.make_unsortable()
    e = Hparam([1, 2])
    e &= d
    assert not e.is_sortable


def test_merge_needs_equal_originals():
    with pytest.raises(ValueError, match=r"original 8.*original 4"):
        a = Hparam(range(1, 5), name="a")
        a &= Hparam(range(1, 9), name="b")


def test_hparams_pickle_and_deepcopy():
    hp = Hparam([16, 32, 48], name="width")
    hp.active = 32
    for clone in (pickle.loads(pickle.dumps(hp)), copy.deepcopy(hp)):
        assert (clone.choices, clone.active, clone.original, clone.name) == ([16, 32, 48], 32, 48, "width")
    cat = ConcatHparam([Hparam(range(1, 5)), Hparam(range(1, 5))])
    cat.active = 5
    clone = pickle.loads(pickle.dumps(cat))
    assert clone.active == 5 and [hp.active for hp in clone.inputs] == [3, 2]


def test_depth_hparam_trailing_restriction():
    depth = DepthHparam(4)
    assert depth.choices == [0, 1, 2, 3, 4] and depth.active == 4
    depth.restrict_to_trailing([True, False, True, True])
    assert depth.choices == [2, 3, 4]
    depth.restrict_to_trailing([True, True, True, True])  # never grows back
    assert depth.choices == [2, 3, 4]
    with pytest.raises(ValueError, match="3 skippable flags for 4 blocks"):
        depth.restrict_to_trailing([True] * 3)


def test_concat_of_two_inputs_balances_and_follows_spec_example():
    a, b = Hparam(range(1, 5), name="a"), Hparam(range(1, 5), name="b")
    cat = ConcatHparam([a, b])
    assert cat._sum_to_combo == {2: (1, 1), 3: (2, 1), 4: (2, 2), 5: (3, 2), 6: (3, 3), 7: (4, 3), 8: (4, 4)}
    assert cat.choices == list(range(2, 9)) and cat.original == 8
    assert not a.is_configurable and not b.is_configurable
    cat.active = 6
    assert (a.active, b.active, cat.active) == (3, 3, 6)
    torch.testing.assert_close(cat.active_slice, torch.tensor([0, 1, 2, 4, 5, 6]))
    cat.active = 8
    assert cat.active_slice == slice(0, 8)
    with pytest.raises(ValueError, match="not configurable"):
        a.active = 1


def test_concat_with_repeated_input_and_prefix_slice():
    o1 = Hparam(range(1, 5))
    cat = ConcatHparam([o1, o1, o1])
    assert cat._sum_to_combo == {3: (1,), 6: (2,), 9: (3,), 12: (4,)}
    cat.active = 6
    torch.testing.assert_close(cat.active_slice, torch.tensor([0, 1, 4, 5, 8, 9]))
    fixed = Hparam([4])
    tail = ConcatHparam([fixed, Hparam(range(1, 5))])  # only the last segment is shortened
    tail.active = 6
    assert tail.active_slice == slice(0, 6)


def test_concat_tie_breaking_is_first_appearance_order():
    a, b = Hparam([1, 2]), Hparam([1, 2])
    assert ConcatHparam([a, b])._sum_to_combo[3] == (2, 1)
    c, d = Hparam([1, 2]), Hparam([1, 2])
    assert ConcatHparam([d, c])._sum_to_combo[3] == (2, 1)  # d, first to appear, gets the larger value


def test_concat_merge_restricts_inputs():
    a, b = Hparam(range(1, 5)), Hparam(range(1, 5))
    cat = ConcatHparam([a, b])
    consumer = Hparam([4, 6, 8])
    cat &= consumer
    assert cat.choices == [4, 6, 8]
    assert a.choices == [2, 3, 4] and b.choices == [2, 3, 4]


def test_concat_enumeration_guard(monkeypatch):
    monkeypatch.setattr(hparam_module, "MAX_CONCAT_COMBINATIONS", 100)
    inputs = [Hparam(range(1, 9)) for _ in range(3)]  # 512 combinations
    with pytest.warns(UserWarning, match="too many input combinations"):
        cat = ConcatHparam(inputs)
    assert cat.choices == list(range(3, 25))
    assert cat._sum_to_combo[12] == (4, 4, 4)
