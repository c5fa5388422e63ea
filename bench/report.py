"""Write the table of bench/results/*.json into the README between the bench markers."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def render() -> str:
    """The Markdown table of every result file, one row per measured ratio."""
    lines = [
        "| benchmark | case | Loopline | anchor | anchor value | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted((ROOT / "bench" / "results").glob("*.json")):
        result = json.loads(path.read_text())
        for row in result.get("rows", []):
            target = row.get("target", "")
            if row.get("met") is not None:  # whether the target was met, when it says
                target = f"{target} ({'met' if row['met'] else 'NOT met'})"
            lines.append(
                f"| {result['name']} | {row['case']} | {row['loopline']} | {row['anchor']} "
                f"| {row['anchor_value']} | {row['ratio']} | {target} |"
            )
    if len(lines) == 2:
        lines.append("| (no results yet: run `make bench`) | | | | | | |")
    return "\n".join(lines)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{render()}\n{END}{tail}")


if __name__ == "__main__":
    main()
