"""The base of every typed settings block: params.yaml sections and search-method Configs.

pydantic models in strict mode: a key the model does not declare is an error (a typo must not
silently fall back to a default), an integer setting does not accept "3", 3.0 or true, and a
float setting accepts an integer. Ranges are declared with the field, once, by these types.
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

#: a count or size where zero makes no sense (epochs, channels, batch size, ...)
Count = Annotated[int, Field(ge=1)]
#: an integer that may be zero (0 = off / no cap / none)
NonNegativeInt = Annotated[int, Field(ge=0)]
#: a rate, scale or step size that must be positive
PositiveFloat = Annotated[float, Field(gt=0)]
#: a weight, decay or threshold that may be zero (0 = off)
NonNegativeFloat = Annotated[float, Field(ge=0)]
#: a probability, fraction or momentum
Fraction = Annotated[float, Field(ge=0, le=1)]


class Settings(BaseModel):
    """Strict, closed settings block: unknown keys and wrong types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "finite_number": "a finite number", "none_required": "null",
}


def describe_error(err: Any) -> str:
    """What was expected and what was found, for one pydantic error."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
              "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}
    if kind in bounds:
        op, key = bounds[kind]
        bound = ctx[key]
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        return f"expected a value {op} {bound}, got {value!r}"
    if kind == "literal_error":
        return f"expected one of {ctx['expected']}, got {value!r}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length', 1)} item(s), got {value!r}"
    if kind == "string_pattern_mismatch":
        return f"expected a string matching {ctx['pattern']}, got {value!r}"
    if kind == "missing":
        return "missing (required)"
    if kind == "value_error":        # a model's own check: its message says it all
        return str(ctx.get("error", err["msg"].removeprefix("Value error, ")))
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {value!r}"
    return f"{err['msg'].rstrip('.')}, got {value!r}"
