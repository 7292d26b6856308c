#!/usr/bin/python3
"""Charts of rill against each peer, from the rows of `rill bench <suite> --json`.

`make bench-report` runs every suite with --json into build/bench-json/ and
then this script, which reads every *.json file of the directories (or the
files) it is given, one JSON object a line as bench/harness.c prints them:

    {"suite":"ring","case":"spsc_u64","impl":"ck_ring","size":8,
     "ns_per_op":5.12,"ratio_vs_rill":1.71}

(latency rows add p50_ns, p99_ns and p999_ns). For each suite it draws one
PNG, OUT/<suite>.png: every case (and size) a group, each implementation's
ns/op on the left (log scale) and each peer's ns/op divided by rill's on the
right (above 1: rill is faster), the reference being the case's first
implementation whose name starts with "rill", as in the harness. It writes a
markdown section with the charts and a table of the figures, into
OUT/report.md, or with --embed FILE into FILE between the lines
<!-- bench-report:begin --> and <!-- bench-report:end -->.

Input is checked before anything is drawn: a line that is not a JSON object
with the harness's fields, a figure that is not a positive finite number, or
a second row for the same suite, case, size and implementation stops the
script with FILE:LINE and what is wrong (exit status 1), and nothing is
written. Needs python3-matplotlib (Debian), imported only once the input is
known good.
"""

import argparse
import importlib.util
import json
import math
import os
import sys

BEGIN = "<!-- bench-report:begin -->"
END = "<!-- bench-report:end -->"

# field: (types, required)
FIELDS = {
    "suite": (str, True),
    "case": (str, True),
    "impl": (str, True),
    "size": (int, True),
    "ns_per_op": ((int, float), True),
    "ratio_vs_rill": ((int, float), False),
    "p50_ns": (int, False),
    "p99_ns": (int, False),
    "p999_ns": (int, False),
}


class BadInput(Exception):
    """Input the report cannot be drawn from; the message says where and why."""


def is_rill(impl):
    return impl.startswith("rill")


def check_row(obj, where):
    if not isinstance(obj, dict):
        raise BadInput(f"{where}: not a JSON object")
    for name, (types, required) in FIELDS.items():
        if name not in obj:
            if required:
                raise BadInput(f"{where}: no \"{name}\" field")
            continue
        v = obj[name]
        # bool is an int to Python; no field of the harness is one.
        if isinstance(v, bool) or not isinstance(v, types):
            raise BadInput(f"{where}: \"{name}\" is {json.dumps(v)}, not of the harness's type")
        if isinstance(v, str) and not v:
            raise BadInput(f"{where}: \"{name}\" is empty")
    if obj["size"] < 0:
        raise BadInput(f"{where}: \"size\" is negative ({obj['size']})")
    for name in ("ns_per_op", "ratio_vs_rill", "p50_ns", "p99_ns", "p999_ns"):
        v = obj.get(name)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise BadInput(f"{where}: \"{name}\" is {v}, not a positive finite number")
    for s in (obj["suite"], obj["case"], obj["impl"]):
        if any(c in s for c in "|\n\r/") or s.startswith("."):
            raise BadInput(f"{where}: the name {json.dumps(s)} has a character a report cannot use")
    return obj


def input_files(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            names = sorted(n for n in os.listdir(p) if n.endswith(".json"))
            files += [os.path.join(p, n) for n in names]
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise BadInput(f"{p}: no such file or directory")
    if not files:
        raise BadInput(f"no *.json file in {', '.join(paths)}")
    return files


def read_rows(paths):
    """Every row of every file, checked; duplicates refused."""
    rows, seen = [], {}
    for path in input_files(paths):
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"{path}: cannot read: {e}") from None
        for n, line in enumerate(lines, 1):
            where = f"{path}:{n}"
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_constant=lambda c: float("nan"))
            except json.JSONDecodeError as e:
                raise BadInput(f"{where}: not JSON ({e.msg} at column {e.colno})") from None
            row = check_row(obj, where)
            key = (row["suite"], row["case"], row["size"], row["impl"])
            if key in seen:
                raise BadInput(
                    f"{where}: a second row for suite {key[0]}, case {key[1]}, size {key[2]}, "
                    f"impl {key[3]} (the first is at {seen[key]})")
            seen[key] = where
            rows.append(row)
    if not rows:
        raise BadInput(f"no rows in {', '.join(paths)}")
    return rows


def by_suite(rows):
    """{suite: [(case, size, [rows in the file's order])]}, groups in first-seen order."""
    suites = {}
    for r in rows:
        groups = suites.setdefault(r["suite"], {})
        groups.setdefault((r["case"], r["size"]), []).append(r)
    return {s: [(c, z, g) for (c, z), g in groups.items()] for s, groups in suites.items()}


def reference(group):
    """The row the others are compared with: the first rill one, or None."""
    return next((r for r in group if is_rill(r["impl"])), None)


def ratio(row, ref):
    if ref is None or is_rill(row["impl"]):
        return None
    return row["ns_per_op"] / ref["ns_per_op"]


def label(case, size):
    return f"{case} ({size} B)" if size else case


def colours(impls):
    """rill's implementations in blues, the peers in the other colours, fixed per report."""
    import matplotlib

    blues = matplotlib.colormaps["Blues"]
    others = matplotlib.colormaps["tab10"]
    rill = [i for i in impls if is_rill(i)]
    peers = [i for i in impls if not is_rill(i)]
    out = {}
    for k, i in enumerate(rill):
        out[i] = blues(0.85 - 0.45 * k / max(1, len(rill) - 1))
    for k, i in enumerate(peers):
        out[i] = others(1 + k % 9)  # tab10's first colour is a blue
    return out


def draw(suite, groups, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls = []
    for _, _, g in groups:
        for r in g:
            if r["impl"] not in impls:
                impls.append(r["impl"])
    colour = colours(impls)
    bar_h = 0.8 / max(len(g) for _, _, g in groups)
    height = 1.3 + sum(0.22 * len(g) + 0.1 for _, _, g in groups)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, height), sharey=True)
    ticks, names = [], []
    for k, (case, size, g) in enumerate(groups):
        ref = reference(g)
        y0 = -k
        for j, r in enumerate(g):
            y = y0 + 0.4 - (j + 0.5) * bar_h
            left.barh(y, r["ns_per_op"], height=bar_h, color=colour[r["impl"]])
            q = ratio(r, ref)
            if q is not None:
                right.barh(y, q, height=bar_h, color=colour[r["impl"]])
                right.annotate(f"{q:.2f}x", (q, y), xytext=(3, 0), textcoords="offset points",
                               va="center", fontsize=7)
        ticks.append(y0)
        names.append(label(case, size))
    left.set_yticks(ticks, names, fontsize=8)
    left.set_xscale("log")
    left.set_xlabel("ns per operation (log scale; shorter is faster)")
    left.grid(axis="x", which="both", alpha=0.3)
    qs = [q for _, _, g in groups for r in g if (q := ratio(r, reference(g))) is not None]
    if qs:
        # Room for the labels beside the bars, and 1 always in sight.
        right.set_xlim(min(qs + [1.0]) / 1.5, max(qs + [1.0]) * 2.5)
    right.set_xscale("log")
    right.axvline(1.0, color="black", linewidth=0.8)
    right.set_xlabel("peer's ns/op ÷ rill's (above 1: rill is faster)")
    right.grid(axis="x", which="both", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[i]) for i in impls]
    fig.legend(handles, impls, loc="upper right", ncol=min(len(impls), 6), fontsize=8,
               frameon=False)
    fig.suptitle(f"rill bench {suite}", x=0.01, y=0.99, ha="left", va="top", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / height))
    # No timestamp or version in the file: the same rows give the same bytes.
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def fmt_ns(v):
    return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"


def markdown(suites, pngs, md_dir):
    out = [
        "<!-- written by scripts/bench_report.py (make bench-report); edit the script, "
        "not this section -->",
        "",
        f"From {sum(len(g) for gs in suites.values() for _, _, g in gs)} rows of "
        "`rill bench <suite> --json`. Left: each implementation's "
        "ns per operation; right: each peer's ns/op divided by rill's for the same case "
        "and size (above 1: rill is faster).",
    ]
    for suite, groups in suites.items():
        rel = os.path.relpath(pngs[suite], md_dir)
        out += ["", f"### {suite}", "", f"![rill bench {suite}: rill against each peer]({rel})", ""]
        lat = any("p50_ns" in r for _, _, g in groups for r in g)
        head = "| case | size | impl | ns/op | vs rill |" + (" p50 | p99 | p99.9 |" if lat else "")
        out += [head, "|" + "---|" * (head.count("|") - 1)]
        for case, size, g in groups:
            ref = reference(g)
            for r in g:
                q = ratio(r, ref)
                cells = [case, str(size) if size else "", r["impl"], fmt_ns(r["ns_per_op"]),
                         f"{q:.2f}x" if q is not None else ""]
                if lat:
                    cells += [str(r[k]) if k in r else "" for k in ("p50_ns", "p99_ns", "p999_ns")]
                out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def embed(path, section):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e}") from None
    b, e = text.find(BEGIN), text.find(END)
    if b < 0 or e < 0 or e < b or text.count(BEGIN) != 1 or text.count(END) != 1:
        raise BadInput(f"{path}: needs one line {BEGIN} and, after it, one line {END}")
    return text[: b + len(BEGIN)] + "\n" + section + text[e:]


def main(argv):
    ap = argparse.ArgumentParser(
        prog="bench_report.py",
        description="Charts of rill against each peer from `rill bench <suite> --json` rows.")
    ap.add_argument("inputs", nargs="+", metavar="DIR|FILE",
                    help="directories of *.json files (or files) of --json rows")
    ap.add_argument("--out", default="docs/bench", metavar="DIR",
                    help="where the PNGs go, one a suite (default docs/bench)")
    ap.add_argument("--embed", metavar="FILE",
                    help="put the markdown section into FILE between its bench-report markers "
                         "instead of writing DIR/report.md")
    a = ap.parse_args(argv)
    try:
        rows = read_rows(a.inputs)
        suites = by_suite(rows)
        md_path = a.embed or os.path.join(a.out, "report.md")
        md_dir = os.path.dirname(os.path.abspath(md_path))
        pngs = {s: os.path.join(a.out, f"{s}.png") for s in suites}
        section = markdown(suites, {s: os.path.abspath(p) for s, p in pngs.items()}, md_dir)
        text = embed(a.embed, section) if a.embed else section
        if importlib.util.find_spec("matplotlib") is None:
            raise BadInput("python3-matplotlib is not installed (scripts/deps.sh installs it)")
        os.makedirs(a.out, exist_ok=True)
        for s, groups in suites.items():
            draw(s, groups, pngs[s])
        with open(md_path, "w", encoding="utf-8") as f:
            f.write(text)
    except BadInput as e:
        print(f"bench_report: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"bench_report: {e}", file=sys.stderr)
        return 1
    for s in suites:
        print(f"bench_report: {pngs[s]}")
    print(f"bench_report: {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
