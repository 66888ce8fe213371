"""Caffe text-format network definitions (``.prototxt``): the tests' reader of the release's network files.

A test oracle, not part of the package: the tests check the architectures and the converters
against the prototxts the DSD release and Deep Compression published.

:func:`parse_prototxt` reads protobuf text format without a schema into :class:`Message`
objects: every field maps to the *list* of its values in order of appearance (a field that
appears once is a list of one), :meth:`Message.get` returns the first value and
:meth:`Message.getall` all of them. Values are

* ``int`` for integer literals (decimal, ``0x`` hex, leading-``0`` octal) and ``float`` for
  the others (``1e-4``, ``0.75f``, ``inf``, ``-nan``);
* ``str`` for quoted strings (escapes decoded, adjacent literals concatenated) *and* for
  enum identifiers such as ``MAX`` or ``TRAIN``;
* ``bool`` for the identifiers ``true`` / ``false`` (also ``True``, ``t``, ``False``, ``f``);
* :class:`Message` for ``name { ... }`` / ``name: { ... }`` / ``name < ... >``.

:func:`layer_specs` turns a parsed net into the hyper-parameters of its Convolution,
InnerProduct, Pooling and LRN layers with Caffe's defaults applied, for both the current
``layer`` entries and the legacy V1 ``layers`` entries (``type: CONVOLUTION``).
:func:`param_shapes` propagates blob shapes through the net the way Caffe's ``Reshape`` does
and returns the parameter blob shapes of every Convolution / InnerProduct layer.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence, Union

from dsd_zoo.convert.caffe import V1_LAYER_TYPES
from dsd_zoo.errors import ConversionError, FormatError

__all__ = [
    "LayerSpec",
    "Message",
    "V1_LAYER_TYPES",
    "layer_specs",
    "layer_type",
    "net_layers",
    "param_shapes",
    "parse_prototxt",
    "read_prototxt",
]

Value = Union[int, float, str, bool, "Message"]
Shape = tuple[Optional[int], ...]

#: Nesting depth accepted by the parser; real prototxts use fewer than 10 levels.
_MAX_DEPTH = 100


class Message:
    """One parsed text-format message: field name -> values, in order of appearance."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Optional[Mapping[str, Sequence[Value]]] = None) -> None:
        self._fields: dict[str, list[Value]] = {k: list(v) for k, v in (fields or {}).items()}

    def add(self, name: str, value: Value) -> None:
        """Append ``value`` to field ``name``."""
        self._fields.setdefault(name, []).append(value)

    def get(self, name: str, default: Optional[Value] = None) -> Optional[Value]:
        """The first value of field ``name``, or ``default`` when the field is absent."""
        values = self._fields.get(name)
        return values[0] if values else default

    def getall(self, name: str) -> list[Value]:
        """All values of field ``name`` (a new list; empty when the field is absent)."""
        return list(self._fields.get(name, ()))

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def items(self) -> Iterator[tuple[str, list[Value]]]:
        """``(name, values)`` pairs in order of first appearance."""
        return ((k, list(v)) for k, v in self._fields.items())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self._fields == other._fields

    def __repr__(self) -> str:
        return f"Message({self._fields!r})"


# --------------------------------------------------------------------------- tokenizer

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n\f\v]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?))
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}<>:,;\[\]])
""",
    re.VERBOSE,
)

# A number glued to a word character or a dot ("1abc", "1.2.3") is malformed. This is checked
# after the match rather than with a lookahead in _TOKEN, which made the regex backtrack through
# every shorter prefix of a long run of digits: quadratic time on hostile input.
_AFTER_NUMBER = re.compile(r"[\w.]")
#: Longest integer literal accepted: a 64-bit value has at most 20 digits (or 22 in octal), and
#: Python refuses to convert decimal strings beyond 4300 digits with a raw ValueError.
_MAX_INT_DIGITS = 100

_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39, '"': 34, "?": 63}
_OCTAL_ESCAPE, _HEX_ESCAPE = re.compile(r"[0-7]{1,3}"), re.compile(r"[0-9a-fA-F]{1,2}")
_TRUE, _FALSE = {"true", "True", "t"}, {"false", "False", "f"}
_FLOAT_WORDS = {"inf": math.inf, "infinity": math.inf, "nan": math.nan}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens, pos, n = [], 0, len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FormatError(f"prototxt {_where(text, pos)}: unexpected character {text[pos]!r}")
        if m.lastgroup == "number" and _AFTER_NUMBER.match(text, m.end()):
            raise FormatError(f"prototxt {_where(text, pos)}: malformed number {text[pos : m.end() + 1]!r}")
        if m.lastgroup != "space":
            tokens.append(_Tok(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    return tokens


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {col}"


def _unquote(text: str, tok: _Tok) -> bytes:
    body, out, i = tok.text[1:-1], bytearray(), 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            try:
                out += c.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate in text given as str
                raise FormatError(
                    f"prototxt {_where(text, tok.pos)}: string holds a lone surrogate {c!r}, which is not text"
                ) from None
            i += 1
            continue
        e = body[i + 1]  # the token regex guarantees a character after a backslash
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
            i += 2
        elif e in "01234567":
            m = _OCTAL_ESCAPE.match(body, i + 1)  # no slicing: that copies the rest each time
            assert m is not None
            value = int(m.group(), 8)
            if value > 255:
                raise FormatError(f"prototxt {_where(text, tok.pos)}: octal escape \\{m.group()} is above 255")
            out.append(value)
            i += 1 + len(m.group())
        elif e in "xX":
            m = _HEX_ESCAPE.match(body, i + 2)
            if m is None:
                raise FormatError(f"prototxt {_where(text, tok.pos)}: \\x escape without hex digits")
            out.append(int(m.group(), 16))
            i += 2 + len(m.group())
        else:
            raise FormatError(f"prototxt {_where(text, tok.pos)}: unknown escape \\{e}")
    return bytes(out)


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def where(self) -> str:
        if self.i < len(self.tokens):
            return _where(self.text, self.tokens[self.i].pos)
        return "end of text"

    def peek(self) -> Optional[_Tok]:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise FormatError("prototxt: unexpected end of text (a '}' or a value is missing)")
        self.i += 1
        return tok

    def accept(self, *texts: str) -> Optional[_Tok]:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.text in texts:
            self.i += 1
            return tok
        return None

    def message(self, close: Optional[str], depth: int) -> Message:
        if depth > _MAX_DEPTH:
            raise FormatError(f"prototxt {self.where()}: messages nested more than {_MAX_DEPTH} deep")
        msg = Message()
        while True:
            tok = self.peek()
            if tok is None:
                if close is not None:
                    raise FormatError(f"prototxt: end of text inside a message; a {close!r} is missing")
                return msg
            if close is not None and self.accept(close):
                return msg
            name = self.take()
            if name.kind != "ident" or name.text.startswith("-"):
                raise FormatError(f"prototxt {_where(self.text, name.pos)}: expected a field name, found {name.text!r}")
            colon = self.accept(":") is not None
            if self.accept("["):
                for value in self.list_values(depth):
                    msg.add(name.text, value)
            else:
                opener = self.accept("{", "<")
                if opener is not None:
                    msg.add(name.text, self.message("}" if opener.text == "{" else ">", depth + 1))
                elif colon:
                    msg.add(name.text, self.scalar())
                else:
                    raise FormatError(f"prototxt {self.where()}: expected ':' or '{{' after field {name.text!r}")
            self.accept(",", ";")

    def list_values(self, depth: int) -> list[Value]:
        values: list[Value] = []
        if self.accept("]"):
            return values
        while True:
            opener = self.accept("{", "<")
            if opener is not None:
                values.append(self.message("}" if opener.text == "{" else ">", depth + 1))
            else:
                values.append(self.scalar())
            if self.accept("]"):
                return values
            if not self.accept(","):
                raise FormatError(f"prototxt {self.where()}: expected ',' or ']' in a list")

    def scalar(self) -> Value:
        # Positions are turned into line and column only for an error: _where scans the text
        # from its start, so doing it for every value made parsing quadratic in the file size.
        tok = self.take()
        if tok.kind == "string":
            parts = [_unquote(self.text, tok)]  # joined once: += on bytes is quadratic
            while (nxt := self.peek()) is not None and nxt.kind == "string":
                parts.append(_unquote(self.text, self.take()))
            try:
                return b"".join(parts).decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError(f"prototxt {_where(self.text, tok.pos)}: string is not valid UTF-8") from None
        if tok.kind == "number":
            value = _number(tok.text)
            if value is None:
                raise FormatError(
                    f"prototxt {_where(self.text, tok.pos)}: integer literal of "
                    f"{len(tok.text)} characters is out of range"
                )
            return value
        if tok.kind == "ident":
            word = tok.text.lstrip("-")
            if word.lower() in _FLOAT_WORDS:
                value = _FLOAT_WORDS[word.lower()]
                return -value if tok.text.startswith("-") else value
            if tok.text in _TRUE:
                return True
            if tok.text in _FALSE:
                return False
            if not tok.text.startswith("-"):
                return tok.text
        raise FormatError(f"prototxt {_where(self.text, tok.pos)}: expected a value, found {tok.text!r}")


def _number(text: str) -> Union[int, float, None]:
    """The value of a number token; ``None`` for an integer literal too long to be one."""
    body = text.lstrip("-")
    sign = -1 if text.startswith("-") else 1
    is_hex = body[:2] in ("0x", "0X")
    if (is_hex or body.isdigit()) and len(body) > _MAX_INT_DIGITS:
        return None
    if is_hex:
        return sign * int(body[2:], 16)
    if re.fullmatch(r"0[0-7]+", body):
        return sign * int(body, 8)
    if re.fullmatch(r"\d+", body):
        return sign * int(body)
    return float(text.rstrip("fF"))


def parse_prototxt(text: str) -> Message:
    """Parse protobuf text format (a Caffe ``.prototxt``) without a schema.

    Args:
        text: the file's contents.

    Returns:
        The top-level :class:`Message` (see the module docstring for the value types).

    Raises:
        FormatError: the text is not valid text format; the message gives line and column.
    """
    return _Parser(text).message(None, 0)


def read_prototxt(path: Union[str, "os.PathLike[str]"]) -> Message:
    """Read and parse a UTF-8 ``.prototxt`` file (see :func:`parse_prototxt`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not UTF-8 text, so not a prototxt") from None
    try:
        return parse_prototxt(text)
    except FormatError as exc:
        raise FormatError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- layer specs


@dataclass(frozen=True)
class LayerSpec:
    """The hyper-parameters of one Convolution, InnerProduct, Pooling or LRN layer.

    Spatial values are ``(height, width)`` pairs with Caffe's defaults applied; fields that
    do not apply to the layer's type are ``None``.

    Attributes:
        name, type, bottom, top: as in the prototxt; ``type`` uses the current names
            (``"Convolution"``), also for V1 ``layers`` entries (``CONVOLUTION``).
        num_output: output channels / features (Convolution, InnerProduct).
        bias_term: whether the layer has a bias blob (Convolution, InnerProduct; default
            true).
        kernel_size: (Convolution, Pooling); ``None`` for global pooling, whose window is
            the whole input.
        stride: default (1, 1) (Convolution, Pooling).
        pad: default (0, 0) (Convolution, Pooling).
        dilation: default (1, 1) (Convolution).
        group: default 1 (Convolution).
        pool: ``"MAX"`` (default), ``"AVE"`` or ``"STOCHASTIC"`` (Pooling).
        global_pooling: default false (Pooling).
        round_mode: ``"CEIL"`` (default, the only mode of 2016 Caffe) or ``"FLOOR"``
            (Pooling).
        local_size, alpha, beta, k, norm_region: LRN, defaults 5, 1.0, 0.75, 1.0,
            ``"ACROSS_CHANNELS"``.
        axis, transpose: InnerProduct, defaults 1 and false.
    """

    name: str
    type: str
    bottom: tuple[str, ...]
    top: tuple[str, ...]
    num_output: Optional[int] = None
    bias_term: Optional[bool] = None
    kernel_size: Optional[tuple[int, int]] = None
    stride: Optional[tuple[int, int]] = None
    pad: Optional[tuple[int, int]] = None
    dilation: Optional[tuple[int, int]] = None
    group: Optional[int] = None
    pool: Optional[str] = None
    global_pooling: Optional[bool] = None
    round_mode: Optional[str] = None
    local_size: Optional[int] = None
    alpha: Optional[float] = None
    beta: Optional[float] = None
    k: Optional[float] = None
    norm_region: Optional[str] = None
    axis: Optional[int] = None
    transpose: Optional[bool] = None


_SPEC_TYPES = ("Convolution", "InnerProduct", "Pooling", "LRN")


def net_layers(net: Message, phase: Optional[str] = None) -> list[Message]:
    """The layer messages of a net (``layer`` or legacy ``layers``), in order.

    Args:
        net: a parsed prototxt.
        phase: ``"TRAIN"`` or ``"TEST"`` to drop layers whose ``include`` / ``exclude``
            rules leave them out of that phase; ``None`` keeps every layer.

    Raises:
        FormatError: the net has both ``layer`` and ``layers`` entries, or an entry is not
            a message.
    """
    new, legacy = net.getall("layer"), net.getall("layers")
    if new and legacy:
        raise FormatError("prototxt has both 'layer' and legacy 'layers' entries; Caffe refuses such nets")
    layers = new or legacy
    for layer in layers:
        if not isinstance(layer, Message):
            raise FormatError(f"prototxt: a layer entry is {layer!r}, not a message")
    return [m for m in layers if phase is None or _in_phase(m, phase)]  # type: ignore[misc]


def layer_type(layer: Message) -> str:
    """The layer's type with V1 enum names (``CONVOLUTION``) translated to current names."""
    raw = layer.get("type", "")
    if not isinstance(raw, str):
        raise FormatError(f"prototxt: layer {layer.get('name')!r} has type {raw!r}")
    return V1_LAYER_TYPES.get(raw, raw)


def _in_phase(layer: Message, phase: str) -> bool:
    def matches(rule: Value) -> bool:
        return not isinstance(rule, Message) or rule.get("phase", phase) == phase

    includes, excludes = layer.getall("include"), layer.getall("exclude")
    if includes and not any(matches(r) for r in includes):
        return False
    return not any(matches(r) for r in excludes)


def layer_specs(net: Message, phase: Optional[str] = None) -> list[LayerSpec]:
    """The Convolution, InnerProduct, Pooling and LRN layers of a net, defaults applied.

    Args:
        net: a parsed prototxt (:func:`parse_prototxt`).
        phase: see :func:`net_layers`.

    Returns:
        One :class:`LayerSpec` per such layer, in prototxt order.

    Raises:
        FormatError: a parameter is missing, has the wrong type, or is given in two
            conflicting ways (``kernel_size`` and ``kernel_h``), as Caffe would refuse.
    """
    specs = []
    for layer in net_layers(net, phase):
        type_ = layer_type(layer)
        if type_ in _SPEC_TYPES:
            specs.append(_spec(layer, type_))
    return specs


def _spec(layer: Message, type_: str) -> LayerSpec:
    name = _str_field(layer, "name", "")
    p = _Params(layer, name, type_)
    base = dict(name=name, type=type_, bottom=tuple(_strs(layer, "bottom", name)), top=tuple(_strs(layer, "top", name)))
    if type_ == "Convolution":
        return LayerSpec(
            **base,
            num_output=p.integer("num_output", minimum=1),
            bias_term=p.flag("bias_term", True),
            kernel_size=p.conv_pair("kernel_size", "kernel_h", "kernel_w", None),
            stride=p.conv_pair("stride", "stride_h", "stride_w", 1, minimum=1),
            pad=p.conv_pair("pad", "pad_h", "pad_w", 0, minimum=0),
            dilation=p.conv_pair("dilation", None, None, 1, minimum=1),
            group=p.integer("group", 1, minimum=1),
        )
    if type_ == "InnerProduct":
        return LayerSpec(
            **base,
            num_output=p.integer("num_output", minimum=1),
            bias_term=p.flag("bias_term", True),
            axis=p.integer("axis", 1),
            transpose=p.flag("transpose", False),
        )
    if type_ == "Pooling":
        global_pooling = p.flag("global_pooling", False)
        kernel = p.pool_pair("kernel_size", "kernel_h", "kernel_w", None)
        stride = p.pool_pair("stride", "stride_h", "stride_w", 1, minimum=1)
        pad = p.pool_pair("pad", "pad_h", "pad_w", 0, minimum=0)
        if global_pooling:
            if kernel is not None:
                raise p.error("sets a kernel size together with global_pooling")
            if stride != (1, 1) or pad != (0, 0):
                raise p.error("global pooling needs stride 1 and pad 0")
        elif kernel is None:
            raise p.error("needs kernel_size (or kernel_h and kernel_w)")
        return LayerSpec(
            **base,
            kernel_size=kernel,
            stride=stride,
            pad=pad,
            pool=p.enum("pool", "MAX", ("MAX", "AVE", "STOCHASTIC")),
            global_pooling=global_pooling,
            round_mode=p.enum("round_mode", "CEIL", ("CEIL", "FLOOR")),
        )
    return LayerSpec(
        **base,
        local_size=p.integer("local_size", 5, minimum=1),
        alpha=p.number("alpha", 1.0),
        beta=p.number("beta", 0.75),
        k=p.number("k", 1.0),
        norm_region=p.enum("norm_region", "ACROSS_CHANNELS", ("ACROSS_CHANNELS", "WITHIN_CHANNEL")),
    )


def _str_field(msg: Message, field: str, default: str) -> str:
    value = msg.get(field, default)
    if not isinstance(value, str):
        raise FormatError(f"prototxt: field {field!r} is {value!r}, not a string")
    return value


def _strs(msg: Message, field: str, layer: str) -> list[str]:
    values = msg.getall(field)
    if not all(isinstance(v, str) for v in values):
        raise FormatError(f"prototxt: layer {layer!r} field {field!r} must hold strings")
    return values  # type: ignore[return-value]


class _Params:
    """Typed access to one layer's ``<type>_param`` block, with Caffe's checks."""

    _BLOCKS = {
        "Convolution": "convolution_param",
        "InnerProduct": "inner_product_param",
        "Pooling": "pooling_param",
        "LRN": "lrn_param",
    }

    def __init__(self, layer: Message, name: str, type_: str) -> None:
        self.name, self.type = name, type_
        blocks = layer.getall(self._BLOCKS[type_])
        if len(blocks) > 1 or (blocks and not isinstance(blocks[0], Message)):
            raise self.error(f"must have exactly one {self._BLOCKS[type_]} block")
        self.msg: Message = blocks[0] if blocks else Message()  # type: ignore[assignment]

    def error(self, what: str) -> FormatError:
        return FormatError(f"prototxt: {self.type} layer {self.name!r} {what}")

    def _one(self, field: str) -> Optional[Value]:
        values = self.msg.getall(field)
        if len(values) > 1:
            raise self.error(f"sets {field!r} {len(values)} times")
        return values[0] if values else None

    def integer(self, field: str, default: Optional[int] = None, minimum: int = -(2**63)) -> int:
        value = self._one(field)
        if value is None:
            if default is None:
                raise self.error(f"needs {field!r}")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"has {field}: {value!r}; expected an integer >= {minimum}")
        return value

    def number(self, field: str, default: float) -> float:
        value = self._one(field)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"has {field}: {value!r}; expected a number")
        return float(value)

    def flag(self, field: str, default: bool) -> bool:
        value = self._one(field)
        if value is None:
            return default
        if value in (0, 1) and not isinstance(value, float):
            return bool(value)
        raise self.error(f"has {field}: {value!r}; expected true or false")

    def enum(self, field: str, default: str, allowed: Sequence[str]) -> str:
        value = self._one(field)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(allowed):
            return allowed[value]  # text format also accepts an enum's number
        if value not in allowed:
            raise self.error(f"has {field}: {value!r}; expected one of {', '.join(allowed)}")
        return value  # type: ignore[return-value]

    def _checked(self, field: str, value: Value, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"has {field}: {value!r}; expected an integer >= {minimum}")
        return value

    def conv_pair(
        self, field: str, h: Optional[str], w: Optional[str], default: Optional[int], minimum: int = 1
    ) -> tuple[int, int]:
        """``BaseConvolutionLayer::LayerSetUp``: 1 or 2 repeated values, or ``_h``/``_w``."""
        values = self.msg.getall(field)
        hw = self._hw(field, h, w, minimum, given=bool(values))
        if hw is not None:
            return hw
        if len(values) == 1:
            v = self._checked(field, values[0], minimum)
            return (v, v)
        if len(values) == 2:
            return (self._checked(field, values[0], minimum), self._checked(field, values[1], minimum))
        if len(values) > 2:
            raise self.error(f"gives {len(values)} values of {field!r}; only 2-D convolutions are supported")
        if default is None:
            raise self.error(f"needs {field!r} (or {h} and {w})")
        return (default, default)

    def pool_pair(
        self, field: str, h: str, w: str, default: Optional[int], minimum: int = 1
    ) -> Optional[tuple[int, int]]:
        """``PoolingLayer::LayerSetUp``: a single value, or ``_h`` and ``_w``."""
        value = self._one(field)
        hw = self._hw(field, h, w, minimum, given=value is not None)
        if hw is not None:
            return hw
        if value is not None:
            v = self._checked(field, value, minimum)
            return (v, v)
        return None if default is None else (default, default)

    def _hw(
        self, field: str, h: Optional[str], w: Optional[str], minimum: int, given: bool
    ) -> Optional[tuple[int, int]]:
        if h is None or w is None:
            return None
        hv, wv = self._one(h), self._one(w)
        if hv is None and wv is None:
            return None
        if hv is None or wv is None:
            raise self.error(f"sets only one of {h} and {w}; both are needed")
        if given:
            raise self.error(f"sets both {field} and {h}/{w}; use one or the other")
        return (self._checked(h, hv, minimum), self._checked(w, wv, minimum))


# --------------------------------------------------------------------------- shapes

#: Layer types whose every top has the shape of the first bottom.
_SAME_SHAPE = frozenset(
    {
        "ReLU",
        "Dropout",
        "LRN",
        "Sigmoid",
        "TanH",
        "BatchNorm",
        "Scale",
        "Bias",
        "PReLU",
        "ELU",
        "AbsVal",
        "Power",
        "Exp",
        "Log",
        "BNLL",
        "Threshold",
        "Softmax",
        "Split",
        "Eltwise",
        "MVN",
    }
)


def param_shapes(
    net: Message, input_shapes: Optional[Mapping[str, Sequence[Optional[int]]]] = None, phase: Optional[str] = "TEST"
) -> dict[str, list[tuple[int, ...]]]:
    """The parameter blob shapes Caffe creates for each Convolution / InnerProduct layer.

    Blob shapes are propagated from the net's inputs as Caffe's ``Reshape`` does (pooling
    rounds up, concat adds along its axis, ...). Inputs come from the net's ``input`` +
    ``input_dim`` / ``input_shape`` fields, ``Input`` layers and ``input_shapes`` (which
    wins). Unknown dimensions may be ``None``: a convolution needs only its input channels,
    an inner product needs every dimension from its axis on.

    Args:
        net: a parsed prototxt.
        input_shapes: blob name -> shape, e.g. ``{"data": (1, 3, 227, 227)}``, for nets
            whose data layers do not state a shape (train_val prototxts).
        phase: see :func:`net_layers`; ``"TEST"`` by default so that duplicated TRAIN/TEST
            data layers do not both count.

    Returns:
        Layer name -> ``[weight_shape, bias_shape]`` (``[weight_shape]`` without a bias),
        e.g. ``{"conv1": [(96, 3, 11, 11), (96,)], "fc8": [(1000, 4096), (1000,)]}``.

    Raises:
        ConversionError: a layer's input shape cannot be determined (pass ``input_shapes``)
            or a shape is inconsistent (channels not divisible by ``group``, window larger
            than the padded input).
        FormatError: see :func:`layer_specs`.
    """
    shapes: dict[str, Optional[Shape]] = dict(_declared_inputs(net))
    for blob, shape in (input_shapes or {}).items():
        shapes[blob] = tuple(shape)
    out: dict[str, list[tuple[int, ...]]] = {}
    for layer in net_layers(net, phase):
        type_ = layer_type(layer)
        spec = _spec(layer, type_) if type_ in _SPEC_TYPES else None
        name = _str_field(layer, "name", "")
        bottoms = [shapes.get(b) for b in _strs(layer, "bottom", name)]
        tops = _strs(layer, "top", name)
        if type_ == "Input":
            continue  # its tops were declared by _declared_inputs
        top_shape = _propagate(layer, type_, spec, bottoms, out)
        for top in tops:
            # A data layer's unknown output must not erase a shape given in input_shapes.
            if top_shape is not None or shapes.get(top) is None:
                shapes[top] = top_shape
    return out


def _declared_inputs(net: Message) -> Iterator[tuple[str, Shape]]:
    names = _strs(net, "input", "<net>")
    dims = net.getall("input_dim")
    shape_msgs = net.getall("input_shape")
    for i, blob in enumerate(names):
        if i < len(shape_msgs) and isinstance(shape_msgs[i], Message):
            yield blob, _dims(shape_msgs[i], f"input_shape of {blob!r}")  # type: ignore[arg-type]
        elif len(dims) >= 4 * (i + 1):
            yield blob, _dims(Message({"dim": dims[4 * i : 4 * i + 4]}), f"input_dim of {blob!r}")
    for layer in net_layers(net):
        if layer_type(layer) != "Input":
            continue
        param = layer.get("input_param")
        shape_list = param.getall("shape") if isinstance(param, Message) else []
        for j, top in enumerate(_strs(layer, "top", str(layer.get("name")))):
            shape = shape_list[j] if j < len(shape_list) else (shape_list[0] if shape_list else None)
            if isinstance(shape, Message):
                yield top, _dims(shape, f"input_param shape of {top!r}")


def _dims(shape: Message, what: str) -> Shape:
    dims = shape.getall("dim")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise FormatError(f"prototxt: {what} has dims {dims!r}; expected non-negative integers")
    return tuple(dims)  # type: ignore[arg-type]


def _propagate(
    layer: Message,
    type_: str,
    spec: Optional[LayerSpec],
    bottoms: list[Optional[Shape]],
    out: dict[str, list[tuple[int, ...]]],
) -> Optional[Shape]:
    first = bottoms[0] if bottoms else None
    if spec is not None and spec.type == "Convolution":
        return _conv(spec, first, out)
    if spec is not None and spec.type == "InnerProduct":
        return _inner_product(spec, first, out)
    if spec is not None and spec.type == "Pooling":
        return _pool(spec, first)
    if type_ in _SAME_SHAPE:
        return first
    if type_ == "Concat":
        return _concat(layer, bottoms)
    if type_ == "Flatten" and first is not None and len(first) >= 1:
        rest = first[1:]
        return (first[0], None if None in rest else math.prod(rest))  # type: ignore[arg-type]
    return None  # data layers, losses and unknown types: shape unknown


def _need(spec: LayerSpec, shape: Optional[Shape], axes: int, what: str) -> Shape:
    if shape is None or len(shape) < axes:
        raise ConversionError(
            f"prototxt: cannot tell the {what} of {spec.type} layer {spec.name!r}: the shape "
            f"of its input {spec.bottom[:1]} is unknown ({shape}); pass "
            "input_shapes={'data': (N, C, H, W)}"
        )
    return shape


def _conv(spec: LayerSpec, shape: Optional[Shape], out: dict) -> Shape:
    shape = _need(spec, shape, 2, "input channels")
    if len(shape) != 4:
        raise ConversionError(
            f"prototxt: Convolution layer {spec.name!r} gets a "
            f"{len(shape)}-D input {shape}; only 2-D convolutions are supported"
        )
    n, c, h, w = shape
    if c is None:
        _need(spec, None, 2, "input channels")
    assert spec.num_output and spec.group and spec.kernel_size and spec.stride and spec.pad and spec.dilation
    if c % spec.group or spec.num_output % spec.group:  # type: ignore[operator]
        raise ConversionError(
            f"prototxt: Convolution layer {spec.name!r}: channels {c} -> "
            f"{spec.num_output} are not divisible by group {spec.group}"
        )
    weight = (spec.num_output, c // spec.group, *spec.kernel_size)  # type: ignore[operator]
    out[spec.name] = [weight, (spec.num_output,)] if spec.bias_term else [weight]
    spatial = []
    for size, k, s, p, d in zip((h, w), spec.kernel_size, spec.stride, spec.pad, spec.dilation):
        extent = d * (k - 1) + 1
        if size is not None and size + 2 * p < extent:
            raise ConversionError(
                f"prototxt: Convolution layer {spec.name!r}: kernel {extent} "
                f"is larger than the padded input {size + 2 * p}"
            )
        spatial.append(None if size is None else (size + 2 * p - extent) // s + 1)
    return (n, spec.num_output, *spatial)


def _inner_product(spec: LayerSpec, shape: Optional[Shape], out: dict) -> Shape:
    axis = spec.axis if spec.axis is not None else 1
    shape = _need(spec, shape, 1, "input features")
    axis = axis + len(shape) if axis < 0 else axis
    tail = shape[axis:]
    if not 0 <= axis < len(shape) or None in tail:
        _need(spec, None, 1, "input features")
    features = math.prod(tail)  # type: ignore[arg-type]
    assert spec.num_output is not None
    weight = (features, spec.num_output) if spec.transpose else (spec.num_output, features)
    out[spec.name] = [weight, (spec.num_output,)] if spec.bias_term else [weight]
    return (*shape[:axis], spec.num_output)


def _pool(spec: LayerSpec, shape: Optional[Shape]) -> Optional[Shape]:
    if shape is None or len(shape) != 4:
        return None
    n, c, h, w = shape
    if spec.global_pooling:
        return (n, c, 1, 1)
    assert spec.kernel_size and spec.stride and spec.pad
    spatial = []
    for size, k, s, p in zip((h, w), spec.kernel_size, spec.stride, spec.pad):
        if size is None:
            spatial.append(None)
            continue
        if size + 2 * p < k:
            raise ConversionError(
                f"prototxt: Pooling layer {spec.name!r}: window {k} is larger than the padded input {size + 2 * p}"
            )
        if spec.round_mode == "FLOOR":
            o = (size + 2 * p - k) // s + 1
        else:
            o = -(-(size + 2 * p - k) // s) + 1
            if p and (o - 1) * s >= size + p:  # the last window must start inside the input
                o -= 1
        spatial.append(o)
    return (n, c, *spatial)


def _concat(layer: Message, bottoms: list[Optional[Shape]]) -> Optional[Shape]:
    if not bottoms or any(b is None for b in bottoms):
        return None
    param = layer.get("concat_param")
    axis = 1
    if isinstance(param, Message):
        axis_value = param.get("axis", param.get("concat_dim", 1))
        if isinstance(axis_value, int) and not isinstance(axis_value, bool):
            axis = axis_value
    first: Shape = bottoms[0]  # type: ignore[assignment]
    axis = axis + len(first) if axis < 0 else axis
    if not 0 <= axis < len(first) or any(len(b) != len(first) for b in bottoms):  # type: ignore[arg-type]
        return None
    along = [b[axis] for b in bottoms]  # type: ignore[index]
    total = None if None in along else sum(along)  # type: ignore[arg-type]
    return (*first[:axis], total, *first[axis + 1 :])
