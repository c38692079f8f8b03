"""Settings errors as one line each: pydantic's ValidationError turned into lines that name the
file, the dotted key and what was expected, and an unknown key's closest valid name (pydantic
gives neither)."""
from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from backbones.names import did_you_mean
from backbones.settings import describe_error


class ConfigError(ValueError):
    """Settings that are unknown, mistyped, out of range or missing: one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


# ---- turning pydantic's errors into one line each ------------------------------------------

def _unwrap(typ: Any) -> Any:
    """``X | None`` -> X; Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(typ)
        if origin is Annotated:
            typ = typing.get_args(typ)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(typ) if a is not type(None)]
            if len(args) != 1:
                return typ
            typ = args[0]
        else:
            return typ


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class found by following ``loc`` (field names, dict keys, list indices)."""
    typ: Any = model
    for part in loc:
        typ = _unwrap(typ)
        if isinstance(typ, type) and issubclass(typ, BaseModel):
            field = typ.model_fields.get(str(part))
            if field is None:
                return None
            typ = field.annotation
        elif typing.get_origin(typ) in (dict, list):
            typ = typing.get_args(typ)[-1]
        else:
            return None
    typ = _unwrap(typ)
    return typ if isinstance(typ, type) and issubclass(typ, BaseModel) else None


def _dotted(prefix: str, loc: tuple[Any, ...]) -> str:
    return ".".join([prefix, *map(str, loc)] if prefix else map(str, loc))


def config_error(exc: ValidationError, model: type[BaseModel], source: str,
                 prefix: str = "") -> ConfigError:
    """One line per problem: ``<file>: <dotted.key>: <what was expected>``; an unknown key
    names the closest valid key of its block."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            block = _model_at(model, loc[:-1])
            valid = list(block.model_fields) if block is not None else []
            where = f"{source}: {_dotted(prefix, loc[:-1])}".rstrip(": ")
            lines.append(str(unknown_key_error(str(loc[-1]), valid, where)))
        else:
            lines.append(f"{source}: {_dotted(prefix, loc)}: {describe_error(err)}")
    return ConfigError("\n".join(lines), lines)


def unknown_key_error(key: str, valid: list[str], where: str) -> ConfigError:
    hint = (did_you_mean(key, valid, cutoff=0.5)
            or f"; valid keys: {', '.join(sorted(valid))}")
    return ConfigError(f"{where}: unknown key {key!r}{hint}")


M = typing.TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any, source: str, prefix: str = "") -> M:
    """``model`` from plain data, or a ConfigError whose lines name ``source`` and the key."""
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise config_error(exc, model, source, prefix) from None
