"""What each torch operation does to the elastic (channel) axis of its tensor input.

Tables only; the handlers in :mod:`autonas_dynamic.trace.handlers` decide what to do with a node
of each kind. Lookups are by function object (``call_function``), method name (``call_method``)
or exact module class (``call_module``). In-place ``_`` variants share their op's kind.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dims import Dims


class OpKind(Enum):
    """How an operation treats the elastic axis of its inputs."""

    SHAPE_PRESERVING = "shape-preserving"  # one tensor in, same shape out
    PARTIAL = "partial"  # keeps some axes (pools, pads, interpolation)
    ELEMENTWISE = "elementwise"  # several tensors broadcast together
    REDUCTION = "reduction"  # reduces the axes given in ``dim``
    CONCAT = "concat"
    SHAPE_READ = "shape-read"  # .shape / .size() / .dim() / dtype / device
    GETITEM = "getitem"
    SCALAR_ARITHMETIC = "scalar-arithmetic"  # operator.* on Python numbers and shapes
    FLATTEN = "flatten"  # flatten / view / reshape: a channel carry only after a global pool
    MOVE_AXES = "move-axes"  # transpose / permute / unsqueeze ...: the elastic axis moves, whole


_POINTWISE = [
    "abs",
    "absolute",
    "acos",
    "arccos",
    "acosh",
    "arccosh",
    "angle",
    "asin",
    "arcsin",
    "asinh",
    "arcsinh",
    "atan",
    "arctan",
    "atanh",
    "arctanh",
    "bitwise_not",
    "ceil",
    "conj_physical",
    "cos",
    "cosh",
    "deg2rad",
    "digamma",
    "erf",
    "erfc",
    "erfinv",
    "exp",
    "exp2",
    "expm1",
    "fix",
    "floor",
    "frac",
    "imag",
    "lgamma",
    "log",
    "log10",
    "log1p",
    "log2",
    "logical_not",
    "logit",
    "i0",
    "mvlgamma",
    "nan_to_num",
    "neg",
    "negative",
    "positive",
    "rad2deg",
    "real",
    "reciprocal",
    "relu",
    "round",
    "rsqrt",
    "sigmoid",
    "sign",
    "sgn",
    "signbit",
    "sin",
    "sinc",
    "sinh",
    "sqrt",
    "square",
    "tan",
    "tanh",
    "isfinite",
    "isinf",
    "isneginf",
    "isnan",
    "isreal",
    "clone",
    "cumprod",
    "cumsum",
    "detach",
    "logcumsumexp",
    "renorm",
    "tril",
    "triu",
    "pos",
    "invert",
    "double",
    "float",
    "half",
    "bfloat16",
    "long",
    "int",
    "type",
    "to",
    "contiguous",
    "type_as",
    "requires_grad_",
    "hardtanh",
    "silu",
    "softmax",
    "log_softmax",
]

_FUNCTIONAL_POINTWISE = [
    "threshold",
    "relu",
    "hardtanh",
    "hardswish",
    "relu6",
    "elu",
    "selu",
    "celu",
    "leaky_relu",
    "rrelu",
    "gelu",
    "logsigmoid",
    "hardshrink",
    "tanhshrink",
    "softsign",
    "softplus",
    "softmin",
    "softmax",
    "softshrink",
    "gumbel_softmax",
    "log_softmax",
    "tanh",
    "sigmoid",
    "hardsigmoid",
    "silu",
    "mish",
    "normalize",
    "dropout",
    "alpha_dropout",
    "feature_alpha_dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
]

_ELEMENTWISE = [
    "add",
    "addcdiv",
    "addcmul",
    "clamp",
    "clip",
    "copysign",
    "div",
    "divide",
    "float_power",
    "floor_divide",
    "fmod",
    "ldexp",
    "lerp",
    "logaddexp",
    "logaddexp2",
    "logical_and",
    "logical_or",
    "logical_xor",
    "hypot",
    "igamma",
    "igammac",
    "mul",
    "multiply",
    "nextafter",
    "pow",
    "remainder",
    "sub",
    "subtract",
    "true_divide",
    "xlogy",
    "eq",
    "ge",
    "greater_equal",
    "gt",
    "greater",
    "isclose",
    "le",
    "less_equal",
    "lt",
    "less",
    "maximum",
    "minimum",
    "fmax",
    "fmin",
    "ne",
    "not_equal",
    "gcd",
    "lcm",
    "where",
    "atan2",
    "arctan2",
    "bitwise_and",
    "bitwise_or",
    "bitwise_xor",
    "bitwise_left_shift",
    "bitwise_right_shift",
]

_OPERATOR_ELEMENTWISE = [
    "add",
    "sub",
    "mul",
    "truediv",
    "floordiv",
    "mod",
    "pow",
    "and_",
    "or_",
    "xor",
    "iadd",
    "isub",
    "imul",
    "itruediv",
    "ifloordiv",
    "imod",
    "ipow",
    "iand",
    "ior",
    "ixor",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "neg",
    "pos",
    "invert",
]

_REDUCTIONS = ["mean", "sum", "amax", "amin", "std", "var", "nansum", "nanmean", "logsumexp"]
_CONCATS = ["cat", "concat", "concatenate"]

_FLATTEN_FUNCTIONS = ["flatten", "reshape"]
_MOVE_AXES = ["transpose", "swapaxes", "swapdims", "permute", "unsqueeze", "squeeze", "unflatten"]
_FLATTEN_METHODS = ["flatten", "view", "reshape"]
_ADAPTIVE_POOL_FUNCTIONS = [f"adaptive_{kind}_pool{n}d" for kind in ("avg", "max") for n in (1, 2, 3)]
ADAPTIVE_POOL_MODULES: tuple[type[nn.Module], ...] = (
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
"""Pools whose output size is given: with output size 1 they are global pools."""

_POOL_AND_PAD_FUNCTIONS = {
    1: "avg_pool1d max_pool1d max_unpool1d lp_pool1d adaptive_max_pool1d adaptive_avg_pool1d",
    2: "avg_pool2d max_pool2d max_unpool2d lp_pool2d adaptive_max_pool2d adaptive_avg_pool2d fractional_max_pool2d",
    3: "avg_pool3d max_pool3d max_unpool3d lp_pool3d adaptive_max_pool3d adaptive_avg_pool3d fractional_max_pool3d",
}
_RESAMPLING_FUNCTIONS = ["interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "grid_sample"]

_MODULES_POINTWISE = (
    nn.ELU, nn.Hardshrink, nn.Hardsigmoid, nn.Hardtanh, nn.Hardswish, nn.LeakyReLU, nn.LogSigmoid, nn.PReLU,
    nn.ReLU, nn.ReLU6, nn.RReLU, nn.SELU, nn.CELU, nn.GELU, nn.Sigmoid, nn.SiLU, nn.Mish, nn.Softplus,
    nn.Softshrink, nn.Softsign, nn.Tanh, nn.Tanhshrink, nn.Threshold, nn.Softmin, nn.Softmax, nn.Softmax2d,
    nn.LogSoftmax, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)  # fmt: skip

_MODULE_POOLS_AND_PADS = {
    1: (nn.MaxPool1d, nn.MaxUnpool1d, nn.AvgPool1d, nn.LPPool1d, nn.AdaptiveMaxPool1d, nn.AdaptiveAvgPool1d,
        nn.ReflectionPad1d, nn.ReplicationPad1d, nn.ZeroPad1d, nn.ConstantPad1d, nn.CircularPad1d),
    2: (nn.MaxPool2d, nn.MaxUnpool2d, nn.AvgPool2d, nn.FractionalMaxPool2d, nn.LPPool2d, nn.AdaptiveMaxPool2d,
        nn.AdaptiveAvgPool2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ZeroPad2d, nn.ConstantPad2d,
        nn.CircularPad2d),
    3: (nn.MaxPool3d, nn.MaxUnpool3d, nn.AvgPool3d, nn.FractionalMaxPool3d, nn.LPPool3d, nn.AdaptiveMaxPool3d,
        nn.AdaptiveAvgPool3d, nn.ReflectionPad3d, nn.ReplicationPad3d, nn.ZeroPad3d, nn.ConstantPad3d,
        nn.CircularPad3d),
}  # fmt: skip


def _kept_axes(ndim: int) -> Dims:
    """Axes a ``ndim``-d pool or pad keeps: batch and channels, in both notations."""
    return frozenset({0, 1, -(ndim + 1)})


def _with_inplace(names: Iterable[str]) -> list[str]:
    return [variant for name in names for variant in (name, name + "_")]


def _lookup(names: Iterable[str], *namespaces: Any) -> list[Callable]:
    found = []
    for name in names:
        for namespace in namespaces:
            fn = getattr(namespace, name, None)
            if callable(fn):
                found.append(fn)
    return found


FUNCTIONS: dict[Callable, tuple[OpKind, Dims | None]] = {}
METHODS: dict[str, tuple[OpKind, Dims | None]] = {}
MODULES: dict[type, tuple[OpKind, Dims | None]] = {}
ADAPTIVE_POOL_FUNCTIONS: frozenset[Callable] = frozenset(_lookup(_ADAPTIVE_POOL_FUNCTIONS, F))


def _register_functions(fns: Iterable[Callable], kind: OpKind, dims: Dims | None = None) -> None:
    for fn in fns:
        FUNCTIONS.setdefault(fn, (kind, dims))


def _build_tables() -> None:
    _register_functions(_lookup(_with_inplace(_POINTWISE), torch), OpKind.SHAPE_PRESERVING)
    _register_functions(_lookup(_with_inplace(_FUNCTIONAL_POINTWISE), F), OpKind.SHAPE_PRESERVING)
    _register_functions(_lookup(_with_inplace(_ELEMENTWISE), torch), OpKind.ELEMENTWISE)
    _register_functions(_lookup(_OPERATOR_ELEMENTWISE, operator), OpKind.ELEMENTWISE)
    _register_functions([F.prelu], OpKind.ELEMENTWISE)  # its weight has one value per channel
    _register_functions(_lookup(_REDUCTIONS, torch), OpKind.REDUCTION)
    _register_functions(_lookup(_CONCATS, torch), OpKind.CONCAT)
    _register_functions([operator.getitem], OpKind.GETITEM)
    _register_functions([getattr], OpKind.SHAPE_READ)
    for ndim, names in _POOL_AND_PAD_FUNCTIONS.items():
        _register_functions(_lookup(names.split(), F), OpKind.PARTIAL, _kept_axes(ndim))
    _register_functions(_lookup(_RESAMPLING_FUNCTIONS, F), OpKind.PARTIAL, frozenset({0, 1}))
    _register_functions([F.pad], OpKind.PARTIAL, None)  # axes depend on the pad length, see handlers
    _register_functions([torch.roll, torch.flip], OpKind.PARTIAL, None)  # axes given by ``dims``, see handlers
    _register_functions(_lookup(_FLATTEN_FUNCTIONS, torch), OpKind.FLATTEN)
    for name in _with_inplace(_POINTWISE):
        METHODS.setdefault(name, (OpKind.SHAPE_PRESERVING, None))
    for name in _with_inplace(_ELEMENTWISE):
        METHODS.setdefault(name, (OpKind.ELEMENTWISE, None))
    for name in _REDUCTIONS:
        METHODS.setdefault(name, (OpKind.REDUCTION, None))
    for name in ("roll", "flip"):
        METHODS[name] = (OpKind.PARTIAL, None)
    for name in ("size", "dim", "numel"):
        METHODS[name] = (OpKind.SHAPE_READ, None)
    for name in ("__getitem__",):
        METHODS[name] = (OpKind.GETITEM, None)
    for name in _FLATTEN_METHODS:
        METHODS[name] = (OpKind.FLATTEN, None)
    _register_functions(_lookup(_MOVE_AXES, torch), OpKind.MOVE_AXES)
    for name in [*_MOVE_AXES, "expand"]:
        METHODS[name] = (OpKind.MOVE_AXES, None)
    MODULES.update(dict.fromkeys(_MODULES_POINTWISE, (OpKind.SHAPE_PRESERVING, None)))
    for ndim, classes in _MODULE_POOLS_AND_PADS.items():
        MODULES.update(dict.fromkeys(classes, (OpKind.PARTIAL, _kept_axes(ndim))))
    resampling = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
    MODULES.update(dict.fromkeys(resampling, (OpKind.PARTIAL, frozenset({0, 1}))))
    MODULES[nn.Flatten] = (OpKind.FLATTEN, None)


_build_tables()


def register_shape_preserving(fn: Callable) -> Callable:
    """Declare a function (as it appears in traced graphs) channel- and shape-preserving.

    Use it for a library function wrapped with ``torch.fx.wrap`` that keeps its input's shape,
    so it does not cut the coupling of the layers around it. Returns ``fn`` (usable as decorator).
    """
    FUNCTIONS[fn] = (OpKind.SHAPE_PRESERVING, None)
    return fn


def function_kind(fn: Any) -> tuple[OpKind, Dims | None] | None:
    """The kind of a ``call_function`` target, or None (a boundary)."""
    try:
        found = FUNCTIONS.get(fn)
    except TypeError:  # unhashable target
        return None
    if found is None and _is_torchvision_stochastic_depth(fn):
        return OpKind.SHAPE_PRESERVING, None
    return found


def method_kind(name: Any) -> tuple[OpKind, Dims | None] | None:
    """The kind of a ``call_method`` target, or None (a boundary)."""
    return METHODS.get(str(name))


def module_kind(module: nn.Module) -> tuple[OpKind, Dims | None] | None:
    """The kind of a leaf module call (exact class match), or None (a boundary)."""
    if isinstance(module, nn.PReLU) and module.num_parameters != 1:
        return None  # one weight per channel: a fixed-size parameter
    return MODULES.get(type(module))


def _is_torchvision_stochastic_depth(fn: Callable) -> bool:
    # torchvision wraps stochastic_depth for fx; it scales whole samples, so it keeps every shape.
    return getattr(fn, "__name__", "") == "stochastic_depth" and getattr(fn, "__module__", "").startswith(
        "torchvision."
    )
