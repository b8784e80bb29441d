#!/usr/bin/env python3
"""Turns hypnos run directories into figures like the paper's and a markdown table.

    scripts/plot.py RUN_DIR [RUN_DIR ...] --out FIG.png [--metric exact] [--table TABLE.md]
                    [--buckets op=] [--title TEXT]

Each run directory holds config.yaml and metrics.jsonl (one JSON object per line; evaluation records have
"kind": "eval", "step", "tokens" and "buckets": {bucket: {"exact", "token_acc", "ce", "count"}}).
One panel per difficulty bucket, one line per number of sleep passes N (sleep.n_passes), the metric
against training tokens; when the runs differ in model.pattern, the pattern joins the label (a hybrid
against an attention-only model), and so does "+JetBlocks" or "no JetBlocks" when some insert JetBlocks
into a pretrained model (model.inserted_jet_after) and others do not. Runs with the same label (different seeds) share a colour. The table
holds each run's final evaluation, preceded by its step-0 evaluation when it has one
(train.eval_at_start: a fine-tuning run's starting accuracy).
"""
import argparse
import json
import os
import sys

import yaml


def load_run(path):
    cfg_path = os.path.join(path, "config.yaml")
    met_path = os.path.join(path, "metrics.jsonl")
    if not os.path.exists(cfg_path) or not os.path.exists(met_path):
        raise SystemExit(f"plot.py: {path} is not a run directory (needs config.yaml and metrics.jsonl)")
    with open(cfg_path) as f:
        cfg = yaml.safe_load(f)
    evals = []
    with open(met_path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"plot.py: {met_path}:{lineno}: not JSON ({e})")
            if rec.get("kind") == "eval":
                evals.append(rec)
    return cfg, evals


def bucket_key(name):
    """Sort "k=16" after "k=2": numeric part when there is one."""
    tail = name.split("=")[-1]
    return (0, float(tail), name) if tail.replace(".", "", 1).isdigit() else (1, 0.0, name)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", required=True, help="PNG file to write")
    ap.add_argument("--metric", default="exact", choices=["exact", "token_acc", "ce"],
                    help="exact | token_acc | ce (default exact)")
    ap.add_argument("--table", help="also write a markdown table of the final evaluation")
    ap.add_argument("--title", default="")
    ap.add_argument("--buckets", default="",
                    help="comma-separated bucket name prefixes to draw (GSM-Infinite: op=); default all")
    args = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for r in args.runs:
        cfg, evals = load_run(r)
        if not evals:
            print(f"plot.py: warning: {r} has no evaluation records yet", file=sys.stderr)
            continue
        runs.append((cfg, r, evals))
    if not runs:
        raise SystemExit("plot.py: no run has evaluation records")
    # A run is named by N, plus its layer pattern when the runs compare patterns (hybrid vs attention).
    patterns = {cfg.get("model", {}).get("pattern") for cfg, _, _ in runs}
    inserted = {bool(cfg.get("model", {}).get("inserted_jet_after")) for cfg, _, _ in runs}
    named = []
    for cfg, r, evals in runs:
        n = cfg.get("sleep", {}).get("n_passes", 1)
        label = f"N={n}" + (f" {cfg['model']['pattern']}" if len(patterns) > 1 else "")
        if len(inserted) > 1:  # a pretrained model with inserted JetBlocks against it without them
            label += " +JetBlocks" if cfg["model"].get("inserted_jet_after") else " no JetBlocks"
        named.append((label, n, r, evals))
    runs = named
    prefixes = [p for p in args.buckets.split(",") if p]
    buckets = sorted({b for _, _, _, ev in runs for b in ev[-1]["buckets"]
                      if b != "all" and (not prefixes or any(b.startswith(p) for p in prefixes))},
                     key=bucket_key)
    if prefixes and not buckets:
        names = sorted({b for _, _, _, ev in runs for b in ev[-1]["buckets"]})
        raise SystemExit(f"plot.py: --buckets {args.buckets} matches none of {', '.join(names)}")
    if not buckets:
        buckets = ["all"]
    cols = min(len(buckets), 3)
    rows = (len(buckets) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ns = sorted({(n, label) for label, n, _, _ in runs})
    color_of = {key: colors[i % len(colors)] for i, key in enumerate(ns)}
    for ax, bucket in zip(axes.flat, buckets):
        for label, n, _, evals in runs:
            xs = [e["tokens"] for e in evals if bucket in e["buckets"]]
            ys = [e["buckets"][bucket][args.metric] for e in evals if bucket in e["buckets"]]
            ax.plot(xs, ys, label=label, color=color_of[(n, label)])
        ax.set_title(bucket)
        ax.set_xlabel("training tokens")
        ax.set_ylabel(args.metric)
        if args.metric in ("exact", "token_acc"):
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(buckets):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    # Outside the panels, so that it hides neither a curve nor the title.
    fig.legend(uniq.values(), uniq.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"plot.py: wrote {args.out}")

    if args.table:
        columns = buckets + ([] if buckets == ["all"] else ["all"])
        lines = ["| run | " + " | ".join(columns) + " | tokens |",
                 "|---" * (len(columns) + 2) + "|"]
        def row(name, record):
            cells = [f"{record['buckets'][b][args.metric]:.3f}" if b in record["buckets"] else "-"
                     for b in columns]
            return f"| {name} | " + " | ".join(cells) + f" | {record['tokens']:.3g} |"

        started = False
        for label, _, path, evals in runs:
            name = f"{label} ({os.path.basename(os.path.normpath(path))})"
            # A run that evaluated its starting weights (train.eval_at_start): that row first.
            if evals[0]["step"] == 0 and len(evals) > 1:
                lines.append(row(name + ", step 0", evals[0]))
                started = True
            lines.append(row(name, evals[-1]))
        with open(args.table, "w") as f:
            f.write(f"Final {args.metric} per bucket"
                    + (" (and at step 0, before training, where a run evaluated it)" if started else "")
                    + ".\n\n" + "\n".join(lines) + "\n")
        print(f"plot.py: wrote {args.table}")


if __name__ == "__main__":
    main()
