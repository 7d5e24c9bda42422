"""Reproduce models/default.{onnx,qonnx.onnx,json}: the default MLP trained on the AMZN 2012-06-21 LOBSTER day.

Data (``hftaccel.model.dataset.amzn_day``): LOBSTER message + orderbook CSVs (vendored in ``hftaccel.data``) ->
``hftaccel.feeds.lobster.to_itch`` -> ``hftaccel.feeds.itch.order_events`` ->
``hftaccel.golden.book.replay`` -> ``hftaccel.golden.features.compute_features`` -> the rows of
the LOBSTER events (synthesized filler messages are replayed for the book state but are not
samples) -> ``hftaccel.model.train.train``.

Usage::

    .venv/bin/python scripts/train_default.py [--out models/default] [--seed 0]

Prints the per-split macro-F1 of every model and writes a JSON summary (``<out>.json`` is the
model card). Runs on one CPU thread in about a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: Label definition of the default model (FI-2010 "mean" labels); alpha = 0.5 bp of the mid gives
#: roughly balanced classes on this day (about 34 % down, 35 % flat, 31 % up). For scale:
#: with AMZN at ~$220 a one-tick ($0.01) move is ~0.45 bp.
HORIZON = 20
ALPHA = 5e-5


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="models/default", help="output path prefix")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from hftaccel.model import dataset, labels, train

    feats, mids, info = dataset.amzn_day()
    cfg = train.TrainConfig(label=labels.LabelConfig(horizon=HORIZON, alpha=ALPHA, method="mean"),
                            seed=args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    res = train.train(feats, mids, cfg, out=args.out, data=info)
    summary = {split: {m: round(v["macro_f1"], 4) for m, v in per.items()}
               for split, per in res.metrics.items()}
    json.dump({"macro_f1": summary, "checks": res.card["checks"],
               "class_balance": {s: v["class_balance"]["fractions"]
                                 for s, v in res.card["splits"].items()}},
              sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
