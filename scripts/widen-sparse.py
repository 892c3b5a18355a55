#!/usr/bin/env python3
"""Widens vigil events with extra sparse numeric inputs — a training-time probe, not a quality set.

Each event gets `--extra` more inputs `extra_K`, each present with probability 0.25 and derived
from one of the event's own values (so they cost the trainer like real columns). Used to measure
`vigil train` on 500k events × ~450 inputs (README, "Model kinds"):

    scripts/widen-sparse.py --out wide.jsonl data/sparse.train.jsonl data/sparse.test.jsonl
    vigil train --kind gbdt --input wide.jsonl --out wide.safetensors
"""
import argparse
import json
import random


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", help="event files (JSON lines), concatenated in order")
    p.add_argument("--out", required=True)
    p.add_argument("--extra", type=int, default=136, help="inputs to add")
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args()
    rnd = random.Random(args.seed)
    with open(args.out, "w") as out:
        for path in args.inputs:
            for line in open(path):
                event = json.loads(line)
                features = event.setdefault("features", {})
                values = [v for v in features.values() if isinstance(v, (int, float))]
                for k in range(args.extra):
                    if rnd.random() < 0.25:
                        base = values[k % len(values)] if values else 1.0
                        features[f"extra_{k}"] = round(base * (1 + 0.1 * rnd.random()), 4)
                out.write(json.dumps(event, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
