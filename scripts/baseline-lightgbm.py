#!/usr/bin/env python3
"""LightGBM and an sklearn MLP on any vigil train/test pair — baselines, never served.

Reads vigil events (JSON lines; every numeric key of `features` is an input, an absent key is
missing) and, optionally, `vigil features` CSVs of the same files (the 20 per-user window
features, joined by eventId). Prints one JSON object with test PR-AUC (average precision) and
ROC-AUC of:

- LightGBM (missing values native): trained on the first 80 % of the training file in time
  (= file) order, early stopping on the log-loss of the last 20 %;
- an sklearn MLPClassifier: missing values filled with the training mean plus one 0/1
  "was missing" column per input that has gaps, standardised, early stopping on a random 10 %.

    baseline-lightgbm.py --train data/sparse.train.jsonl --test data/sparse.test.jsonl \\
        [--train-features train.csv --test-features test.csv] [--no-mlp] [--mlp-hidden 64,32]

Needs numpy, scikit-learn and lightgbm (pip install numpy scikit-learn lightgbm).
"""
import argparse
import array
import csv
import json
import math
import sys
import time

import numpy as np


def load_events(path):
    """Feature matrix (NaN = missing), labels, eventIds, feature names (first-seen order)."""
    index, labels, ids = {}, [], []
    rows, cols, vals = array.array("q"), array.array("q"), array.array("d")  # compact, not lists
    with open(path) as f:
        for line in f:
            e = json.loads(line)
            if e.get("label") is None:
                continue
            r = len(labels)
            labels.append(int(e["label"]))
            ids.append(e["eventId"])
            feats = e.get("features") or {}
            if "amount" not in feats and isinstance(e.get("value"), (int, float)):
                feats["amount"] = e["value"]
            for k, v in feats.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    j = index.get(k)
                    if j is None:
                        j = index[k] = len(index)
                    rows.append(r)
                    cols.append(j)
                    vals.append(v)
    x = np.full((len(labels), len(index)), np.nan, dtype=np.float32)
    r, c = np.frombuffer(rows, dtype=np.int64), np.frombuffer(cols, dtype=np.int64)
    x[r, c] = np.frombuffer(vals, dtype=np.float64)
    return x, np.array(labels, dtype=np.int8), ids, list(index)


def load_windows(path, ids):
    """The 20 window features of `vigil features` CSV, rows in the order of ids."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        names = next(reader)[1:]
        by_id = {row[0]: [float(v) if v else math.nan for v in row[1:]] for row in reader}
    missing = [i for i in ids if i not in by_id]
    if missing:
        sys.exit(f"{path}: no row for {len(missing)} events, e.g. {missing[0]}")
    return np.array([by_id[i] for i in ids], dtype=np.float32), names


def load(events, features):
    x, y, ids, names = load_events(events)
    if features:
        w, wnames = load_windows(features, ids)
        x, names = np.hstack([w, x]), wnames + names
    return x, y, names


def align(x, names, target):
    """Columns of x reordered to `target` names (absent ones all missing)."""
    pos = {n: i for i, n in enumerate(names)}
    out = np.full((len(x), len(target)), np.nan, dtype=np.float32)
    for j, n in enumerate(target):
        if n in pos:
            out[:, j] = x[:, pos[n]]
    return out


def lightgbm(x, y, xt, names, seed, threads):
    import lightgbm as lgb

    cut = len(y) - round(len(y) * 0.2)
    train = lgb.Dataset(x[:cut], y[:cut], feature_name=names, free_raw_data=False)
    valid = lgb.Dataset(x[cut:], y[cut:], reference=train, free_raw_data=False)
    params = {
        "objective": "binary",
        "metric": ["binary_logloss", "average_precision"],
        "first_metric_only": True,
        "learning_rate": 0.05,
        "num_leaves": 63,
        "min_child_samples": 50,
        "feature_fraction": 0.7,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": seed,
        "verbose": -1,
        "num_threads": threads,
    }
    start = time.time()
    booster = lgb.train(params, train, num_boost_round=3000, valid_sets=[valid],
                        callbacks=[lgb.early_stopping(100, first_metric_only=True, verbose=False)])
    best = booster.best_score["valid_0"]
    return booster.predict(xt, num_iteration=booster.best_iteration), {
        "best_iteration": booster.best_iteration,
        "validation_pr_auc": best["average_precision"],
        "train_seconds": round(time.time() - start, 1),
    }


def mlp(x, y, xt, hidden, seed, max_iter, indicators):
    from sklearn.neural_network import MLPClassifier

    def prepare(a, mean, gaps):
        miss = np.isnan(a)
        a = np.where(miss, mean, a)
        return np.hstack([a, miss[:, gaps]]) if indicators else a

    seen = (~np.isnan(x)).sum(axis=0)
    mean = np.where(seen > 0, np.nansum(x, axis=0) / np.maximum(seen, 1), 0.0)  # all-missing: 0
    gaps = np.isnan(x).any(axis=0)
    a, at = prepare(x, mean, gaps), prepare(xt, mean, gaps)
    mu, sd = a.mean(axis=0), a.std(axis=0)
    sd[sd == 0] = 1.0
    a, at = ((a - mu) / sd).astype(np.float32), ((at - mu) / sd).astype(np.float32)
    start = time.time()
    model = MLPClassifier(hidden_layer_sizes=hidden, alpha=1e-4, batch_size=512, learning_rate_init=1e-3,
                          max_iter=max_iter, early_stopping=True, validation_fraction=0.1,
                          n_iter_no_change=5, random_state=seed)
    model.fit(a, y)
    return model.predict_proba(at)[:, 1], {
        "hidden": list(hidden),
        "inputs": a.shape[1],
        "epochs": model.n_iter_,
        "train_seconds": round(time.time() - start, 1),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="labelled training events (JSON lines, time order)")
    p.add_argument("--test", required=True, help="labelled test events (JSON lines)")
    p.add_argument("--train-features", help="`vigil features` CSV of --train (optional)")
    p.add_argument("--test-features", help="`vigil features` CSV of --test (optional)")
    p.add_argument("--no-mlp", action="store_true", help="LightGBM only")
    p.add_argument("--no-lightgbm", action="store_true", help="MLP only")
    p.add_argument("--mlp-hidden", default="64,32", help="hidden layer widths (default 64,32)")
    p.add_argument("--mlp-max-iter", type=int, default=30, help="most MLP epochs (default 30)")
    p.add_argument("--mlp-no-indicators", action="store_true", help="mean-fill only, no missing indicators")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if bool(a.train_features) != bool(a.test_features):
        p.error("give both --train-features and --test-features, or neither")
    from sklearn.metrics import average_precision_score, roc_auc_score

    x, y, names = load(a.train, a.train_features)
    xt, yt, names_t = load(a.test, a.test_features)
    if names_t != names:
        xt = align(xt, names_t, names)
    out = {
        "train_events": int(len(y)), "train_fraud": int(y.sum()),
        "test_events": int(len(yt)), "test_fraud": int(yt.sum()),
        "inputs": len(names), "windows": bool(a.train_features),
        "missing_share": round(float(np.isnan(x).mean()), 3),
    }
    if not a.no_lightgbm:
        s, info = lightgbm(x, y, xt, names, a.seed, a.threads)
        out["lightgbm"] = {"pr_auc": average_precision_score(yt, s), "roc_auc": roc_auc_score(yt, s), **info}
    if not a.no_mlp:
        hidden = tuple(int(h) for h in a.mlp_hidden.split(","))
        s, info = mlp(x, y, xt, hidden, a.seed, a.mlp_max_iter, not a.mlp_no_indicators)
        out["mlp"] = {"pr_auc": average_precision_score(yt, s), "roc_auc": roc_auc_score(yt, s), **info}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
