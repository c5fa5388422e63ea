"""What validating data against a contract found: :class:`ValidationReport` of :class:`Violation`.

A :class:`Violation` is one rule broken by one column (or by the table, for the row
count), with the expected and actual values and a few example rows;
:meth:`ValidationReport.raise_for_violations` turns a report into
:class:`ContractViolations`, a :class:`~loopline.errors.ContractViolation` listing them
all. Plain results with no pandera or pandas, apart from the validation that makes them
(:mod:`loopline.data.contract_validation`). The public face is
:mod:`loopline.data.contracts` (``ll.contracts``).

Example:
    >>> str(Violation("age", "max", "<= 120", 130))
    'age: max: expected <= 120, actual 130'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from loopline.core.columns import json_number
from loopline.errors import ContractViolation


@dataclass(frozen=True)
class Violation:
    """One rule broken by one column (``column`` is None for a table-level rule)."""

    column: str | None
    rule: str
    expected: Any
    actual: Any
    examples: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        where = self.column if self.column is not None else "(table)"
        text = f"{where}: {self.rule}: expected {self.expected}, actual {self.actual}"
        if self.examples:
            shown = ", ".join(f"row {e['row']}={e['value']!r}" for e in self.examples)
            text += f" (e.g. {shown})"
        return text


class ContractViolations(ContractViolation):
    """Data broke its contract; ``violations`` lists every broken rule."""

    def __init__(self, message: str, violations: list[Violation], *, hint: str | None = None):
        field_name = violations[0].column if violations else None
        super().__init__(message, field=field_name, hint=hint)
        self.violations = violations


def _json_violation(v: Violation) -> dict[str, Any]:
    data = asdict(v)
    actual = v.actual
    data["actual"] = (
        [json_number(a) for a in actual] if isinstance(actual, list) else json_number(actual)
    )
    data["examples"] = [{**e, "value": json_number(e["value"])} for e in v.examples]
    return data


@dataclass(frozen=True)
class ValidationReport:
    """What :meth:`Contract.validate` found; ``ok`` when nothing was violated."""

    contract: str | None
    rows: int
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        """True when the data meets every rule."""
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: an infinite value is the text ``"inf"`` or ``"-inf"``.

        Example:
            >>> ValidationReport("c", 3, []).to_dict()["ok"]
            True
        """
        return {
            "contract": self.contract,
            "ok": self.ok,
            "rows": self.rows,
            "violations": [_json_violation(v) for v in self.violations],
        }

    def raise_for_violations(self) -> None:
        """Raise :class:`ContractViolations` (a ``ContractViolation``) listing every violation.

        Example:
            >>> ValidationReport("c", 3, []).raise_for_violations()  # nothing to raise
        """
        if self.ok:
            return
        label = f"contract {self.contract!r}" if self.contract else "the contract"
        lines = "\n".join(f"  - {v}" for v in self.violations)
        raise ContractViolations(
            f"the data breaks {label}: {len(self.violations)} violation(s)\n{lines}",
            self.violations,
            hint="fix the data, or edit the contract if the change is intended",
        )
