"""The command line's ``--input-shape``: one sample's shape, or the shapes of several inputs.

==============================  ==============================================================
``--input-shape 1 28 28``       one input tensor of sample shape (1, 28, 28)
``--input-shape x=3 y=2,2``     several inputs, named by ``forward()``'s arguments
``--input-shape 3 2,2``         several inputs in ``forward()``'s argument order: once one of
                                several words has a comma, each word is one input's shape
                                (``4,`` is (4,)); ``2x2`` is ``2,2``
==============================  ==============================================================

The words become what :func:`polynet.expand` takes as ``input_shape``: a tuple of sizes, a
tuple of shapes, or ``{argument: shape}``; the names are checked against ``forward()`` when the
model is built (:func:`polynet.expansion.inputs.parse_inputs`).

Examples
--------
>>> parse_input_shape(["1", "28", "28"])
(1, 28, 28)
>>> parse_input_shape(["x=3", "y=2,2"])
{'x': (3,), 'y': (2, 2)}
>>> parse_input_shape(["3", "2,2"])
((3,), (2, 2))
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

__all__ = ["FORMS", "InputShapeAction", "parse_input_shape"]

#: The accepted forms, for messages.
FORMS = (
    "the forms are --input-shape 1 28 28 (one input), --input-shape x=3 y=2,2 (several "
    "inputs named by forward()'s arguments) and --input-shape 3 2,2 (several inputs in "
    "argument order)"
)

Shape = tuple[int, ...]


#: What separates the sizes of one shape: "2,2", "28x28".
_SEPARATOR = re.compile(r"[,x×]")


def _sizes(text: str, word: str) -> Shape:
    """``"2,2"``, ``"(2, 2)"``, ``"28x28"``, ``"3"`` or ``"3,"`` as sizes."""
    inner = text.strip()
    if inner[:1] in "([" and inner[-1:] in ")]":
        inner = inner[1:-1]
    parts = [p.strip() for p in _SEPARATOR.split(inner)]
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # "3," is the one-dimensional shape (3,), as in Python
    if not parts or parts == [""]:
        raise ValueError(f"{word!r} gives no sizes; {FORMS}.")
    for part in parts:
        if not re.fullmatch(r"\d+", part) or int(part) < 1:
            model = re.search(r"[:/\\]|\.[A-Za-z]", word) is not None
            hint = (
                " (if it is the model, name MODEL before --input-shape, which takes every "
                "word after it)"
                if model
                else ""
            )
            raise ValueError(
                f"{word!r} is not a shape: {part!r} is not a size (an integer >= 1){hint}; {FORMS}."
            )
    return tuple(int(p) for p in parts)


def parse_input_shape(words: Sequence[str]) -> Shape | tuple[Shape, ...] | dict[str, Shape]:
    """The ``input_shape`` that the words after ``--input-shape`` give.

    Parameters
    ----------
    words : sequence of str
        As typed: sizes (``1 28 28``), ``name=shape`` words (``x=3 y=2,2``), or one shape per
        word once a word has a comma (``3 2,2``).

    Returns
    -------
    tuple of int, tuple of tuples, or dict
        One shape; several in argument order; several by argument name.

    Raises
    ------
    ValueError
        A word that is not a size or a shape, a name given twice, or named and unnamed shapes
        mixed; the message names the word and lists the accepted forms.
    """
    words = [w for w in words if w.strip()]
    if not words:
        raise ValueError(f"no shape given; {FORMS}.")
    named = [w for w in words if "=" in w]
    if named:
        unnamed = [w for w in words if "=" not in w]
        if unnamed:
            raise ValueError(
                f"{named[0]!r} names its input but {unnamed[0]!r} does not; name every input "
                f"or none; {FORMS}."
            )
        shapes: dict[str, Shape] = {}
        for word in words:
            name, _, text = word.partition("=")
            name = name.strip()
            if not name.isidentifier():
                raise ValueError(
                    f"{word!r}: {name!r} is not an argument name of forward(); {FORMS}."
                )
            if name in shapes:
                raise ValueError(
                    f"{name!r} is given twice ({word!r}); give each input once; {FORMS}."
                )
            shapes[name] = _sizes(text, word)
        return shapes
    if len(words) == 1:  # "13", "13," or "1,28,28": the one input's shape
        return _sizes(words[0], words[0])
    if any(_SEPARATOR.search(w) for w in words):
        return tuple(_sizes(w, w) for w in words)
    return tuple(_sizes(w, w)[0] for w in words)


class InputShapeAction(argparse.Action):
    """argparse action for ``--input-shape`` (``nargs="+"``): stores the parsed shape(s), or
    fails as a usage error naming the flag and its forms."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: D102
        try:
            setattr(namespace, self.dest, parse_input_shape(values))
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
