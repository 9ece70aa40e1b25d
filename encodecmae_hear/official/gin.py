"""A small reader for gin config strings, enough to take sizes out of official checkpoints.

Official EnCodecMAE checkpoints store `gin.config_str()` output: `# comment` lines,
macros (`MODEL_DIM = 768`) and bindings (`scope/module.Configurable.param = value`), a
value continued over several lines with a trailing backslash or indented lines. Values
are Python literals, macro references (`%MODEL_DIM`) and configurable references
(`@encoder/module.Configurable`, or `@...()` for a call). Nothing is imported or
executed: values are read with `ast.literal_eval`.

    cfg = GinConfig.parse(text)
    cfg.get("TransformerEncoder", "num_layers", scope="encoder")  # macros resolved
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

_MISSING = object()
_REFERENCE = re.compile(r"(?<![\w'\"])([@%])([A-Za-z_][\w./]*)(\(\))?")
_MARK = "\x00gin:"


@dataclass(frozen=True)
class Ref:
    """`@scope/module.Name` (called=True for `@...()`)."""
    selector: str
    called: bool = False

    @property
    def name(self) -> str:  # the configurable's own name, without scope and module
        return self.selector.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Macro:
    name: str


class GinError(ValueError):
    pass


def _open_brackets(text: str) -> int:
    depth, quote = 0, None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    return depth


def _statements(text: str) -> list[str]:
    """Joins continued lines (backslash, open brackets, indentation) and expands blocks
    (`Configurable:` then indented `param = value` lines); drops comments, blank lines,
    imports and includes."""
    statements: list[str] = []
    block = None      # selector of the open `Configurable:` block
    complete = True   # the last statement needs no more lines
    for raw in text.splitlines():
        line = "" if raw.lstrip().startswith("#") else raw.rstrip()
        if not line.strip():
            continue
        indented = line[:1].isspace()
        if not complete and statements:
            statements[-1] += " " + line.strip()
        elif indented and block:
            statements.append(f"{block}.{line.strip()}")
        elif indented and statements:
            statements[-1] += " " + line.strip()
        elif line.endswith(":") and "=" not in line:
            block = line[:-1].strip()
            continue
        else:
            block = None
            statements.append(line.strip())
        complete = not statements[-1].endswith("\\") and _open_brackets(statements[-1]) <= 0
        if statements[-1].endswith("\\"):
            statements[-1] = statements[-1][:-1].rstrip()
    return [s for s in statements if not s.startswith(("import ", "from ", "include "))]


def parse_value(text: str):
    """A gin value -> Python value, with Ref and Macro for references."""
    def mark(match):
        kind, name, call = match.groups()
        return repr(f"{_MARK}{kind}{name}{call or ''}")

    try:
        value = ast.literal_eval(_REFERENCE.sub(mark, text.strip()))
    except (ValueError, SyntaxError) as err:
        raise GinError(f"cannot read gin value {text!r}: {err}") from None
    return _unmark(value)


def _unmark(value):
    if isinstance(value, str) and value.startswith(_MARK):
        body = value[len(_MARK):]
        if body[0] == "%":
            return Macro(body[1:])
        called = body.endswith("()")
        return Ref(body[1:-2] if called else body[1:], called)
    if isinstance(value, (list, tuple)):
        return type(value)(_unmark(v) for v in value)
    if isinstance(value, dict):
        return {_unmark(k): _unmark(v) for k, v in value.items()}
    return value


class GinConfig:
    def __init__(self, macros: dict, bindings: dict):
        self.macros = macros        # name -> raw value text
        self.bindings = bindings    # (scope, configurable name, param) -> raw value text

    @classmethod
    def parse(cls, text: str) -> "GinConfig":
        macros, bindings = {}, {}
        for statement in _statements(text):
            key, sep, value = statement.partition("=")
            key = key.strip().rstrip("+")  # ginpipe's `+=` has been applied in config_str
            if not sep or not key:
                raise GinError(f"not a gin binding: {statement[:120]!r}")
            if "." not in key:
                macros[key] = value
                continue
            selector, param = key.rsplit(".", 1)
            scope, _, name = selector.rpartition("/")
            bindings[(scope, name.rsplit(".", 1)[-1], param)] = value
        return cls(macros, bindings)

    def resolve(self, value, depth: int = 0):
        """Replaces macros (recursively, also inside lists) by their values."""
        if depth > 20:
            raise GinError("macro references nest too deep (a cycle?)")
        if isinstance(value, Macro):
            if value.name not in self.macros:
                raise GinError(f"macro %{value.name} is used but not defined")
            return self.resolve(parse_value(self.macros[value.name]), depth + 1)
        if isinstance(value, (list, tuple)):
            return type(value)(self.resolve(v, depth + 1) for v in value)
        return value

    def has(self, name: str, param: str, scope: str = "") -> bool:
        return (scope, name, param) in self.bindings or ("", name, param) in self.bindings

    def get(self, name: str, param: str, scope: str = "", default=_MISSING):
        """The value bound to `name.param` (the configurable's short name), the scoped
        binding winning over an unscoped one; `default` when unbound."""
        for key in ((scope, name, param), ("", name, param)):
            if key in self.bindings:
                return self.resolve(parse_value(self.bindings[key]))
        if default is _MISSING:
            where = f"{scope}/" if scope else ""
            raise GinError(f"the config binds no {where}{name}.{param}")
        return default
