"""The text of a file a user wrote: UTF-8 without a byte-order mark, or one clear error.

Every loader of a user's file (TOML, YAML, JSON, line lists) reads it through `read_text`, so a
folder where a file belongs, another encoding or a BOM is said the same way for all of them,
with the line it happens on.
"""

import codecs
from pathlib import Path

from imagebuild.errors import RecipeError

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
TOO_DEEP = "nests deeper than any file of this kind should"
TOO_DEEP_HINT = "flatten the nested lists or tables; a few levels are all this file needs"


def read_text(path: Path, *, missing_hint: str | None = None, keep_bom: bool = False) -> str:
    """The file's text; a missing file, a folder, a BOM (unless `keep_bom`: the mirror rewriters
    keep it) or bytes that are not UTF-8 raise RecipeError."""
    if path.is_dir():
        raise RecipeError("is a folder, where a file is expected", path=path, hint="name the file inside it, or a file beside it")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError("file not found", path=path, hint=missing_hint or "create it, or correct the name that points here") from None
    except OSError as error:
        raise RecipeError(f"cannot be read: {error.strerror}", path=path, hint="check the file's permissions") from None
    return decode(data, path, keep_bom=keep_bom)


def decode(data: bytes, path: Path, *, keep_bom: bool = False) -> str:
    """`data` as UTF-8 text without BOM; `path` only names the file in the error."""
    if data.startswith(codecs.BOM_UTF8) and not keep_bom:
        raise RecipeError(
            "line 1: starts with a byte-order mark (BOM)",
            path=path,
            hint="save the file as UTF-8 without BOM (e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE)",
        )
    if data.startswith(_UTF16_BOMS):
        raise RecipeError("is UTF-16, not UTF-8", path=path, hint="save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise RecipeError(
            f"line {line}, column {column}: not UTF-8 (byte 0x{data[error.start]:02x})",
            path=path,
            hint="save the file as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8 FILE)",
        ) from None
