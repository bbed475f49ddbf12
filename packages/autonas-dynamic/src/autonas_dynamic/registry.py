"""The registry of dynamic layer implementations, open to user layer types.

``DYNAMIC_REGISTRY`` maps a torch layer class to its dynamic base class and a key (the
``AutoNASConfig`` alias, e.g. ``"nn.Conv2d"``). A subclass of a registered class that does not
override ``forward`` converts like its base. For every convertible class a concrete class
``Dynamic<Name>(<dynamic base>, <class>)`` is generated once and cached.

Registering your own layer::

    class DynamicScale(DynamicModule):
        width = HparamAttribute()
        _dynamic_tensors = ("scale",)

        def _setup(self):
            self._register_hparam("width", Hparam(range(1, self.width + 1)))

        @property
        def scale(self):
            return self._parameters["scale"][: self.width]

        def forward(self, x):
            return x * self.scale

    DYNAMIC_REGISTRY.register(Scale, key="my.Scale")(DynamicScale)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

from .dynamic import DynamicModule

__all__ = ["DYNAMIC_REGISTRY", "DMRegistry"]

_D = TypeVar("_D", bound=type[DynamicModule])


class DMRegistry:
    """Maps torch layer classes to dynamic implementations and converts modules in place."""

    def __init__(self, prefix: str = "Dynamic") -> None:
        self._prefix = prefix
        self._bases: dict[type[nn.Module], tuple[type[DynamicModule], str]] = {}
        self._generated: dict[type[nn.Module], type[DynamicModule]] = {}
        self._names: dict[str, type[DynamicModule]] = {}
        self._lookup_cache: dict[type, type[nn.Module] | None] = {}

    # ----------------------------------------------------------------------------- registration
    def register(self, nn_cls: type[nn.Module], key: str | None = None) -> Callable[[_D], _D]:
        """Decorator registering a dynamic base class for ``nn_cls``.

        Args:
            nn_cls: The torch layer class (its subclasses that keep its ``forward`` follow along).
            key: The rule key of this layer type; defaults to ``"<module>.<qualname>"``.
        """
        if not (isinstance(nn_cls, type) and issubclass(nn_cls, nn.Module)):
            raise TypeError(f"only nn.Module subclasses can be registered, got {nn_cls!r}")
        if nn_cls in self._bases:
            raise ValueError(f"{nn_cls.__qualname__} is already registered (key {self._bases[nn_cls][1]!r})")
        key = key or f"{nn_cls.__module__}.{nn_cls.__qualname__}"

        def decorator(dynamic_base: _D) -> _D:
            if not (isinstance(dynamic_base, type) and issubclass(dynamic_base, DynamicModule)):
                raise TypeError(f"the implementation of {key!r} must subclass DynamicModule, got {dynamic_base!r}")
            if nn_cls in self._bases:
                raise ValueError(f"{nn_cls.__qualname__} is already registered (key {self._bases[nn_cls][1]!r})")
            self._bases[nn_cls] = (dynamic_base, key)
            self._lookup_cache.clear()
            return dynamic_base

        return decorator

    def unregister(self, nn_cls: type[nn.Module]) -> None:
        """Remove a registered class and every dynamic class generated from it or its subclasses."""
        if nn_cls not in self._bases:
            raise KeyError(f"{getattr(nn_cls, '__qualname__', nn_cls)!r} is not registered")
        del self._bases[nn_cls]
        for cls in [cls for cls in self._generated if issubclass(cls, nn_cls)]:
            generated = self._generated.pop(cls)
            self._names.pop(generated.__name__, None)
        self._lookup_cache.clear()

    # ----------------------------------------------------------------------------- lookup
    def _registered_base(self, cls: type) -> type[nn.Module] | None:
        """The registered class ``cls`` converts as (itself or a base whose forward it keeps)."""
        if cls in self._lookup_cache:
            return self._lookup_cache[cls]
        found = None
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            plain = cls._original_cls if issubclass(cls, DynamicModule) else cls
            for base in plain.__mro__:
                if base in self._bases:
                    if plain.forward is base.forward:
                        found = base
                    break
        self._lookup_cache[cls] = found
        return found

    @staticmethod
    def _as_class(cls_or_module: type | nn.Module) -> type:
        return cls_or_module if isinstance(cls_or_module, type) else type(cls_or_module)

    def __contains__(self, cls_or_module: object) -> bool:
        return self._registered_base(self._as_class(cls_or_module)) is not None  # type: ignore[arg-type]

    def get_key(self, cls_or_module: type | nn.Module) -> str | None:
        """The rule key (e.g. ``"nn.Conv2d"``) of a class, module or dynamic module; ``None`` if unsupported."""
        base = self._registered_base(self._as_class(cls_or_module))
        return None if base is None else self._bases[base][1]

    @property
    def keys(self) -> list[str]:
        """Every registered key, in registration order."""
        return [key for _, key in self._bases.values()]

    def dynamic_class(self, nn_cls: type[nn.Module]) -> type[DynamicModule]:
        """The generated ``Dynamic<Name>`` class for ``nn_cls`` (created on first use)."""
        generated = self._generated.get(nn_cls)
        if generated is not None:
            return generated
        base = self._registered_base(nn_cls)
        if base is None:
            raise KeyError(self._unsupported_message(nn_cls))
        dynamic_base = self._bases[base][0]
        name = f"{self._prefix}{nn_cls.__name__}"
        if name in self._names:
            name = f"{nn_cls.__module__.replace('.', '_')}_{name}"
        generated = type(name, (dynamic_base, nn_cls), {"_original_cls": nn_cls, "__module__": dynamic_base.__module__})
        self._generated[nn_cls] = generated
        self._names[name] = generated
        return generated

    def convert(self, module: nn.Module) -> DynamicModule:
        """Make ``module`` dynamic in place (a class swap, no copy) and return it."""
        if isinstance(module, DynamicModule):
            return module
        return self.dynamic_class(type(module))._convert(module)

    def _unsupported_message(self, cls: type) -> str:
        overridden = [base for base in self._bases if issubclass(cls, base)]
        if overridden:
            return (
                f"{cls.__qualname__} subclasses {overridden[0].__qualname__} but overrides forward; register a "
                "dynamic implementation for it with DYNAMIC_REGISTRY.register"
            )
        return f"{cls.__qualname__} has no dynamic implementation; supported: {', '.join(self.keys)}"


def _new_dynamic_instance(original_cls: type[nn.Module]) -> DynamicModule:
    """Unpickling helper: an empty instance of the dynamic class of ``original_cls``."""
    cls = DYNAMIC_REGISTRY.dynamic_class(original_cls)
    return cls.__new__(cls)


#: The registry of the built-in dynamic layers (and of user layers registered with it).
DYNAMIC_REGISTRY = DMRegistry()
