"""Step 1, load: the strict TOML loader behind every typed file a user writes.

Every model forbids unknown keys, so a typo is an error that names the file and the key
(with the key it most likely meant) instead of a setting that silently does nothing.
"""

import difflib
import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from imagebuild.errors import RecipeError
from imagebuild.model.names import looks_like_secret
from imagebuild.model.text import TOO_DEEP, TOO_DEEP_HINT, read_text


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Model = TypeVar("Model", bound=BaseModel)

_KEY_LIKE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
"""An unknown key is repeated in the message only when it looks like a key (a pasted secret is not)."""


def _field(loc: tuple[int | str, ...]) -> str:
    """('python', 'requirements') -> '[python].requirements', as a user reads a TOML file (a key
    that looks like a secret, such as a token pasted as an [env] name, is not repeated)."""
    loc = tuple("<a secret-like key>" if isinstance(part, str) and looks_like_secret(part) else part for part in loc)
    if not loc:
        return "(top level)"
    if len(loc) == 1:
        return str(loc[0])
    rest = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    return f"[{loc[0]}]{rest}"


def _nested(annotation: object) -> type[BaseModel] | None:
    """The model a field holds (directly, in a list or optional), if any."""
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _walk(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[type[BaseModel], FieldInfo | None]:
    """The model whose keys are valid after `loc`, and the field `loc` ends on (None: no field)."""
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        nested = _nested(info.annotation) if info is not None else None
        if nested is not None:
            model = nested
    return model, info


def _explain(error: dict[str, Any], model: type[BaseModel], path: Path) -> tuple[str, str]:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        known = list(_walk(model, loc[:-1])[0].model_fields)
        key = str(loc[-1])
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys here: {', '.join(sorted(known))}"
        if not _KEY_LIKE.fullmatch(key):
            return f"{_field(loc[:-1])}: a key that is no setting here (not repeated)", hint
        return f"{_field(loc)}: unknown key", hint
    field = _field(loc)
    info = _walk(model, loc)[1]
    message = str(error["msg"]).removeprefix("Value error, ")
    description = info.description if info is not None else None
    if description:
        hint = f"{field}: {description}"
    else:
        hint = f"correct {field} in {path.name}" if loc else f"change the settings the message names in {path.name}"
    return f"{field}: {message}", hint


def load_toml(path: Path, *, missing_hint: str | None = None) -> dict[str, Any]:
    """The TOML document at `path`; text, syntax and nesting problems become one RecipeError."""
    text = read_text(path, missing_hint=missing_hint)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(
            f"not valid TOML: {_located(str(exc), text)}",
            path=path,
            hint="https://toml.io shows the syntax; quote strings, [table] headers on their own line",
        ) from None
    except RecursionError:
        raise RecipeError(TOO_DEEP, path=path, hint=TOO_DEEP_HINT) from None


def _located(message: str, text: str) -> str:
    """tomllib's message, where it says only "at end of document" (a string, array or table
    never closed) with the line that opened it: the last line before which the text still parses."""
    if "(at end of document)" not in message:
        return message
    lines = text.splitlines(keepends=True)
    opened = next(
        (number for number in range(len(lines), 0, -1) if _parses("".join(lines[: number - 1]))),
        1,
    )
    return message.replace("(at end of document)", f"(opened at line {opened} and never closed)")


def _parses(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def validated(data: object, path: Path, model: type[Model]) -> Model:
    """`data` as `model`; the first problem (an unknown key first) becomes one RecipeError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # an unknown key first: it is usually the typo behind a "field required" next to it
        first = min(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
        message, hint = _explain(dict(first), model, path)
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise RecipeError(message, path=path, hint=hint) from None
    except RecursionError:
        raise RecipeError(TOO_DEEP, path=path, hint=TOO_DEEP_HINT) from None


def parse_toml(path: Path, model: type[Model], *, missing_hint: str | None = None) -> Model:
    """Read a TOML file into `model`; any problem becomes one RecipeError naming file and field."""
    return validated(load_toml(path, missing_hint=missing_hint), path, model)
