"""Which class a label or a prediction names, and when a prediction is a probability.

Labels arrive as JSON (``1``, ``true``, ``"1"``) and predictions come from whatever the model
returns (``1``, ``1.0``, ``numpy.int64(1)``, ``0.83``): both sides are brought to one
spelling before they are compared. A binary classifier that returns the probability of
the positive class (``0.83``) predicts class ``1`` when that probability is at least 0.5
(:data:`THRESHOLD`), as scikit-learn's ``predict`` does for its ``predict_proba``; the
probability itself is the score AUC ranks by.

Used by live performance (:mod:`loopline.monitoring.performance`) and by the model server's
feedback route (live accuracy of an A/B test or a canary), so both score alike.

Example:
    >>> class_name(True), class_name(1.0), predicted_class(0.83, "1")
    ('1', '1', '1')
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import numpy as np

from loopline.errors import InvalidInput

#: The probability from which a binary classifier's answer is class ``1``.
THRESHOLD = 0.5
BINARY = frozenset({"0", "1"})


def class_name(value: Any) -> str:
    """The class a label or a prediction names, as text: a bool, an int and a whole float
    name the same class (``True``, ``1``, ``1.0`` and ``"1.0"`` are all ``"1"``).

    Example:
        >>> [class_name(v) for v in (True, 1, 1.0, "1.0", "yes", 0.5)]
        ['1', '1', '1', '1', 'yes', '0.5']
    """
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    text = str(value)
    return text[:-2] if text.endswith(".0") else text


def is_probability(value: Any) -> bool:
    """Whether ``value`` is a number strictly between 0 and 1 (not a bool): what a binary
    classifier's probability looks like, and no class label does.

    Example:
        >>> is_probability(0.83), is_probability(1.0), is_probability(True), is_probability("0.5")
        (True, False, False, False)
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return False
    f = float(value)
    return math.isfinite(f) and 0.0 < f < 1.0


def predicted_class(prediction: Any, label_class: str) -> str:
    """The class ``prediction`` names, to be compared with a label of class
    ``label_class``: a probability met by a label of ``0`` or ``1`` is that of class ``1``
    (class ``1`` from :data:`THRESHOLD` up); anything else is its :func:`class_name`.

    Example:
        >>> predicted_class(0.3, "1"), predicted_class(0.5, "0"), predicted_class(0.3, "cat")
        ('0', '1', '0.3')
    """
    if label_class in BINARY and is_probability(prediction):
        return "1" if float(prediction) >= THRESHOLD else "0"
    return class_name(prediction)


def positive_class(classes: Collection[str], positive: Any = None) -> str | None:
    """The positive class of a binary classifier seen with ``classes`` (as
    :func:`class_name` writes them): ``positive`` when given (one of them, when there are
    two), else ``1`` when it is one of them, else the greater of two. Of a single class:
    ``1`` when the class is ``0`` or ``1`` (a model of 0 and 1 whose rows held one of
    them), else None - which is the other class, and which of the two is positive?

    ``classes`` are all the classes the model was seen with, not one window's: a window
    of a 0/1 model that holds only 0 still scores class 1 (its precision and recall are
    then undefined, not those of class 0).

    Example:
        >>> positive_class({"0", "1"}), positive_class({"0"}), positive_class({"no", "yes"})
        ('1', '1', 'yes')
        >>> positive_class({"stayed"}) is None, positive_class({"no", "yes"}, "no")
        (True, 'no')
    """
    ordered = sorted(classes)
    if positive is not None:
        wanted = class_name(positive)
        if len(ordered) == 2 and wanted not in ordered:
            raise InvalidInput(
                f"the positive class {positive!r} is not one of the classes {ordered}",
                field="positive",
                hint="name one of them, as the labels write it",
            )
        return wanted
    if len(ordered) == 2:
        return "1" if "1" in ordered else ordered[-1]
    if len(ordered) == 1 and ordered[0] in BINARY:
        return "1"
    return None
