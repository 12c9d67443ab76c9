"""Rewrite the two preset tables of docs/simulate.rst from `presets_table`.

Run after changing a preset: ``python docs/make_presets_tables.py``. Each table follows a
``.. presets-table: <family>`` comment and ends at its closing ``===`` rule.
"""

from pathlib import Path

from lensenhance.simulate.presets import PRESETS, presets_table

PAGE = Path(__file__).with_name("simulate.rst")


def rst_table(names):
    """An RST simple table of the presets ``names`` (field, unit, one column each, meaning)."""
    table = presets_table(names)
    rows = [[str(row[c]) for c in table.colnames] for row in table]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(table.colnames)]
    rule = " ".join("=" * w for w in widths)

    def line(cells):
        return " ".join(v.ljust(w) for v, w in zip(cells, widths)).rstrip()

    return [rule, line(table.colnames), rule, *map(line, rows), rule]


def main():
    lines = PAGE.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i].startswith(".. presets-table:"):
            family = lines[i].split(":", 1)[1].strip()
            names = [n for n, p in PRESETS.items() if p.family == family]
            out += ["", *rst_table(names)]
            i += 1
            while i < len(lines) and not lines[i].startswith("="):  # blank lines
                i += 1
            rules = 0
            while i < len(lines) and rules < 3:  # skip the old table
                rules += lines[i].startswith("=")
                i += 1
            continue
        i += 1
    PAGE.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
