"""The base of every autonas config: a validated pydantic model that also reads like a mapping."""

from __future__ import annotations

import functools
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["BaseConfig"]


class BaseConfig(BaseModel):
    """A pydantic model that is also a read/write mapping over its keys.

    * Unknown keys are refused (the error names the key and lists the allowed ones) and every
      assignment is validated again.
    * A key is a field's alias (``"nn.Conv2d"``) or its name (``"nn_conv2d"``); iteration and
      :meth:`keys` yield aliases (the name where a field has no alias), and so do
      :meth:`model_dump` and :meth:`model_dump_json`.
    * ``cfg[key]``, ``cfg[key] = value``, ``key in cfg``, :meth:`get`, :meth:`update`, ``len(cfg)``
      work as on a ``dict``; deleting a key raises ``TypeError`` since every key always holds a value.
    * Every field must have a default, so ``Config()`` is always a complete config.

    ``isinstance(cfg, collections.abc.Mapping)`` is ``True``.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        missing = [name for name, field in cls.model_fields.items() if field.is_required()]
        if missing:
            raise TypeError(f"{cls.__name__}: every config field needs a default; missing for {missing}")

    # -- keys ----------------------------------------------------------------------------------

    @classmethod
    @functools.cache
    def _field_keys(cls) -> dict[str, str]:
        """Map each field's key (alias, else name) to its field name."""
        return {field.alias or name: name for name, field in cls.model_fields.items()}

    def _canonical_key(self, key: str) -> str | None:
        """The key under which ``key`` (an alias or a field name) is stored, or ``None`` if unknown."""
        fields = type(self).model_fields
        if key in fields:
            return fields[key].alias or key
        return key if key in self._field_keys() else None

    def _allowed_keys(self) -> list[str]:
        """Every key this config accepts, for error messages."""
        return list(self._field_keys())

    def _lookup(self, key: Any) -> str:
        canonical = self._canonical_key(key) if isinstance(key, str) else None
        if canonical is None:
            raise KeyError(f"{key!r} is not a key of {type(self).__name__}; allowed keys: {self._allowed_keys()}")
        return canonical

    @model_validator(mode="before")
    @classmethod
    def _validate_input_keys(cls, data: Any) -> Any:
        is_raw_input = isinstance(data, Mapping) and not isinstance(data, BaseModel)
        return cls._check_input_keys(data) if is_raw_input else data

    @classmethod
    def _check_input_keys(cls, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Refuse unknown keys and keys given twice (by alias and by name), naming them."""
        keys = cls._field_keys()
        names = set(keys.values())
        unknown = [key for key in data if key not in keys and key not in names]
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} for {cls.__name__}; allowed keys: {list(keys)}")
        for key, name in keys.items():
            if key != name and key in data and name in data:
                raise ValueError(f"{key!r} is given twice, by alias {key!r} and by name {name!r}")
        return data

    # -- mapping interface ---------------------------------------------------------------------

    def _get(self, canonical: str) -> Any:
        field_name = self._field_keys().get(canonical)
        if field_name is None:
            return (self.__pydantic_extra__ or {})[canonical]
        return getattr(self, field_name)

    def _set(self, canonical: str, value: Any) -> None:
        setattr(self, self._field_keys()[canonical], value)

    def __getitem__(self, key: str) -> Any:
        return self._get(self._lookup(key))

    def __setitem__(self, key: str, value: Any) -> None:
        self._set(self._lookup(key), value)

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"{type(self).__name__} keys cannot be deleted; assign a new value to {key!r} instead")

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        canonical = self._canonical_key(key)
        return canonical in self._field_keys() or canonical in (self.__pydantic_extra__ or {})

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # keys, as a mapping iterates
        yield from self._field_keys()
        yield from self.__pydantic_extra__ or {}

    def __len__(self) -> int:
        return len(type(self).model_fields) + len(self.__pydantic_extra__ or {})

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]`` if ``key`` is present, else ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> KeysView[str]:
        """The keys: aliases, or field names for fields without an alias."""
        return KeysView(self)  # type: ignore[arg-type]

    def values(self) -> ValuesView[Any]:
        """The values, in key order."""
        return ValuesView(self)  # type: ignore[arg-type]

    def items(self) -> ItemsView[str, Any]:
        """``(key, value)`` pairs, in key order."""
        return ItemsView(self)  # type: ignore[arg-type]

    def update(self, other: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /, **kwargs: Any) -> None:
        """Set items one by one, as ``dict.update`` does; each value is validated as it is set."""
        pairs = other.items() if isinstance(other, Mapping) else other
        for key, value in [*pairs, *kwargs.items()]:
            self[key] = value


Mapping.register(BaseConfig)
