#!/usr/bin/env python3
# Copyright the fibers authors.
# Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
"""Turns the RESULT, ECHO and MACHINE lines of a benchmark log into one table.

    test/perf/collect.py LOG [--markdown doc/performance.md] [--chart doc/performance.svg]

LOG is what test/perf/bench.sh wrote: the benchmarks' own output, in which
these lines are read (values with spaces in double quotes):

    MACHINE cpu="..." cores=2 kernel="..." date="..." load="..." command="..."
    RESULT id=hub.root_sleep_0s figure="root sleep(0s)" fibers=71.1 anchor=163.2
           anchor_name="yield from main's context" unit=ns goal=ratio<=0.6
    ECHO workload="ping-pong 100 x 512 B" server="raw epoll" rate=... cpu_us=... calls=...

A goal is "ratio<=X" (fibers / anchor at most X), "value<=X" (fibers at most
X) or "-" (none). The table goes to standard output. With --markdown, the
part of that file between the lines "<!-- bench:begin -->" and
"<!-- bench:end -->" is replaced by the machine, the date, the table, the
chart and the echo servers' figures. With --chart, gnuplot draws every
figure that has a goal as a share of its goal (1: the goal itself) into that
SVG file (PNG if its name ends in .png); the data it draws is written beside
it (.dat). Exit status: 0 when
a table was made, whether the goals hold or not; 1 when the log has no
RESULT line; 2 on bad usage.
"""

import argparse
import math
import os
import shlex
import subprocess
import sys

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"

GROUPS = {
    "switch": "switch",
    "stack": "stacks",
    "hub": "hub",
    "sync": "sync and pools",
    "million": "a million tasks",
    "growth": "cost growth",
    "echo": "echo server",
}


def parse(path):
    machine, results, echo = {}, [], []
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            kind, _, rest = line.strip().partition(" ")
            if kind not in ("RESULT", "ECHO", "MACHINE"):
                continue
            try:
                fields = dict(item.split("=", 1) for item in shlex.split(rest) if "=" in item)
            except ValueError:
                print(f"collect.py: cannot read: {line.strip()}", file=sys.stderr)
                continue
            if kind == "MACHINE":
                machine.update(fields)
            elif kind == "ECHO":
                echo.append(fields)
            elif "id" in fields and "fibers" in fields:
                results.append(fields)
    # A benchmark run twice (by hand) counts once: its last line.
    last = {r["id"]: r for r in results}
    seen, unique = set(), []
    for r in results:
        if r["id"] not in seen:
            seen.add(r["id"])
            unique.append(last[r["id"]])
    return machine, unique, echo


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def evaluate(r):
    """Adds ratio, goal text, share of the goal and whether it holds."""
    ours, anchor = number(r.get("fibers")), number(r.get("anchor"))
    r["ratio"] = ours / anchor if ours is not None and anchor else None
    goal = r.get("goal", "-")
    r["goal_text"], r["share"], r["holds"] = "", None, None
    for kind in ("ratio", "value"):
        if goal.startswith(kind + "<="):
            limit = number(goal[len(kind) + 2:])
            measured = r["ratio"] if kind == "ratio" else ours
            if limit and measured is not None:
                r["goal_text"] = f"<= {limit:g}" + ("x" if kind == "ratio" else f" {r.get('unit', '')}")
                r["share"] = measured / limit
                r["holds"] = measured <= limit
    return r


def show(value, unit):
    v = number(value)
    if v is None:
        return ""
    if unit in ("msg/s", "mappings") or (unit == "ns" and v >= 10000):
        text = f"{v:,.0f}"
    elif unit in ("calls", "faults"):
        text = f"{v:.3f}"
    elif abs(v) >= 100:
        text = f"{v:.0f}"
    elif abs(v) >= 10:
        text = f"{v:.1f}"
    else:
        text = f"{v:.2f}"
    return f"{text} {unit}"


def ratio_text(r):
    x = r["ratio"]
    if x is None:
        return ""
    return f"{x:.2f}x" if 0.01 <= x < 100 else f"{x:.2g}x"


def holds_text(r):
    return {True: "holds", False: "does not hold", None: ""}[r["holds"]]


def group_of(r):
    return GROUPS.get(r["id"].split(".", 1)[0], r["id"].split(".", 1)[0])


def text_table(results):
    head = ("figure", "fibers", "anchor", "", "ratio", "goal", "")
    rows = [(r["figure"], show(r["fibers"], r.get("unit")), r.get("anchor_name", ""),
             show(r.get("anchor"), r.get("unit")), ratio_text(r), r["goal_text"], holds_text(r)) for r in results]
    widths = [max(len(str(row[i])) for row in rows + [head]) for i in range(len(head))]
    right = (False, True, False, True, True, False, False)

    def line(row):
        return "  ".join(str(c).rjust(w) if right[i] else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    out = [line(head)]
    group = None
    for r, row in zip(results, rows):
        if group_of(r) != group:
            group = group_of(r)
            out.append(f"-- {group}")
        out.append(line(row))
    held = [r for r in results if r["holds"] is not None]
    out.append(f"{sum(r['holds'] for r in held)} of {len(held)} goals hold")
    return "\n".join(out)


def machine_text(m):
    parts = []
    if m.get("date"):
        parts.append(f"Measured {m['date']}")
    if m.get("cpu"):
        parts.append(f"on {m['cpu']}, {m.get('cores', '?')} cores, Linux {m.get('kernel', '?')}")
    text = " ".join(parts)
    if m.get("load"):
        text += f"; load average {m['load']} before the run"
        if m.get("load_after"):
            text += f", {m['load_after']} after"
    if m.get("command"):
        text += f"; `{m['command']}`"
    return text + "."


def markdown(machine, results, echo, chart_name):
    md = [machine_text(machine), ""]
    if machine.get("note"):
        md += [machine["note"], ""]
    md += ["| | figure | fibers | anchor | | ratio | goal | |",
           "| --- | --- | ---: | --- | ---: | ---: | --- | --- |"]
    group = None
    for r in results:
        g = group_of(r) if group_of(r) != group else ""
        group = group_of(r)
        cells = (g, r["figure"], show(r["fibers"], r.get("unit")), r.get("anchor_name", ""),
                 show(r.get("anchor"), r.get("unit")), ratio_text(r), r["goal_text"], holds_text(r))
        md.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    held = [r for r in results if r["holds"] is not None]
    md += ["", f"{sum(r['holds'] for r in held)} of {len(held)} goals hold."]
    if chart_name:
        md += ["", f"![Every figure with a goal, as a share of its goal: below 1 it holds]({chart_name})"]
    if echo:
        md += ["", "The echo servers, each the best of its runs (rates for information: on two cores "
               "the client sets them):", "",
               "| workload | server | messages/s | server CPU per message | system calls per message |",
               "| --- | --- | ---: | ---: | ---: |"]
        for e in echo:
            rate = show(e.get("rate"), "msg/s").replace(" msg/s", "")
            calls = show(e.get("calls"), "calls").replace(" calls", "") or "-"
            md.append(f"| {e.get('workload', '')} | {e.get('server', '')} | {rate} | "
                      f"{show(e.get('cpu_us'), 'µs')} | {calls} |")
    return "\n".join(md) + "\n"


def write_markdown(path, block):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        print(f"collect.py: {path} has no {BEGIN} ... {END} block to replace", file=sys.stderr)
        return False
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + BEGIN + "\n" + block + END + tail)
    return True


def draw(path, machine, results):
    shown = [r for r in results if r["share"] is not None]
    if not shown:
        return False
    data = os.path.splitext(path)[0] + ".dat"
    with open(data, "w", encoding="utf-8") as f:
        f.write("# figure, anchor, measured / goal, colour (green: holds)\n")
        for r in shown:
            label = r["figure"] + (f" vs {r['anchor_name']}" if r.get("anchor_name") else "")
            colour = 0x2E8B57 if r["holds"] else 0xCD5C5C
            f.write(f"\"{label.replace(chr(34), '')}\"\t{r['share']:.4f}\t{colour}\n")
    top = max(1.5, min(4.0, math.ceil(max(r["share"] for r in shown) * 1.15 * 2) / 2))
    title = "fibers: each figure against its goal" + (f", {machine['date']}" if machine.get("date") else "")
    height = 120 + 24 * len(shown)
    terminal = (f'pngcairo size 1000,{height} font "sans,9" background "white"' if path.endswith(".png") else
                f'svg size 1000,{height} dynamic font "sans,11" background "white"')
    script = f"""
set terminal {terminal}
set output "{path}"
set title "{title}" noenhanced
set xlabel "measured / goal (the goal holds below 1; bars clipped at {top:g})"
set style fill solid 0.85 border -1
set yrange [{len(shown)}-0.5:-0.5]
set xrange [0:{top:g}]
set ytics noenhanced nomirror scale 0
set xtics nomirror
set grid xtics lc rgb "#dddddd"
set arrow from 1, graph 0 to 1, graph 1 nohead dt 2 lw 1.5 lc rgb "black"
set lmargin at screen 0.45
plot "{data}" using (($2 < {top:g} ? $2 : {top:g})/2):0:(0):($2 < {top:g} ? $2 : {top:g}):($0-0.35):($0+0.35):3:ytic(1) \\
     with boxxyerror lc rgb variable notitle, \
     "" using (($2 < {top:g} ? $2 : {top:g}) + 0.02):0:(sprintf("%.2f", $2)) with labels left notitle
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"collect.py: gnuplot failed: {e}", file=sys.stderr)
        return False
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("log")
    p.add_argument("--markdown", help="the file whose bench block to replace")
    p.add_argument("--chart", help="the SVG file to draw")
    args = p.parse_args()
    machine, results, echo = parse(args.log)
    if not results:
        print(f"collect.py: no RESULT line in {args.log}", file=sys.stderr)
        return 1
    results = [evaluate(r) for r in results]
    print(text_table(results))
    chart_name = None
    if args.chart:
        if draw(args.chart, machine, results) and args.markdown:
            chart_name = os.path.relpath(args.chart, os.path.dirname(os.path.abspath(args.markdown)))
    if args.markdown:
        if not write_markdown(args.markdown, markdown(machine, results, echo, chart_name)):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
