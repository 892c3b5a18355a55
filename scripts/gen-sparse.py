#!/usr/bin/env python3
"""Synthetic e-commerce fraud events with many sparse numeric inputs (IEEE-CIS-like).

Writes vigil events (docs/events.md), one JSON object per line, in time order:

    {"eventId": "sp-000001", "timestamp": "2024-01-01T00:03:12.512Z", "userId": "card-123",
     "features": {"amount": 49.95, "product_cd": 0, "c1": 2, "d1": 140, "v12": 0, ...}, "label": 0}

and splits them 80/20 by time into OUT/sparse.train.jsonl and OUT/sparse.test.jsonl.

What the data looks like (names follow the IEEE-CIS columns they imitate):

- a userId is a card; each card has fixed attributes (card1-card6, addr1-addr2, p_email), a
  usual amount scale, a usual hour of day and a home location, so vigil's per-user windows
  (counts, amount ratio, location_new, time_unusual) carry signal;
- `product_cd` (5 codes), label-encoded categoricals (email domains, browser, device codes) as
  plain numbers, counts c1-c14, time deltas d1-d15, match flags m1-m9, 200 engineered columns
  v1-v200 in blocks that are present or absent together, and identity columns id_01-id_38 that
  exist for a minority of events;
- a missing input is omitted from `features` (about 70 of 290 inputs present per event).

Fraud (about 3.5 % of events) comes from two sources:

1. account-takeover bursts: a stolen card is used several times within minutes or hours, from a
   new device and far away, first with small "card testing" amounts, then large ones;
2. rule-like risk on ordinary traffic (about 2.4 %): a sharp logistic function of narrow
   thresholds (new card with few counts, an amount band for credit cards, a high value of one
   heavy-tailed V column), scattered high-risk codes of label-encoded categoricals (e-mail
   domain, region, browser, screen, card ranges), AND-interactions, and missingness patterns
   (identity present but a V block absent, d4 without d15). Trees find these easily; a network
   on mean-imputed, standardised inputs does not (LightGBM ~0.65 vs MLP ~0.43 PR-AUC with the
   defaults; scripts/baseline-lightgbm.py).

Deterministic for a given --seed; stdlib and numpy only; 500k events take about 30 s of CPU and
400 MB (train 320 MB, test 80 MB).

    scripts/gen-sparse.py [--events 500000] [--users 30000] [--days 90] [--seed 7] [--out data]
"""
import argparse
import datetime as dt
import os
import sys
import time

import numpy as np

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

N_V = 200
# V blocks: (size, presence rule); presence is decided per event, the whole block at once.
V_BLOCKS = [
    (11, "d11"),  # with d11
    (23, "m"),  # with the m1-m3 match block
    (18, "prod0"),  # product 0 only, some of the time
    (20, "id"),  # with identity
    (16, "c_hi"),  # cards with many linked addresses
    (24, "rand10"),  # 10 % of the cards, always
    (14, "prod12"),  # products 1 and 2
    (30, "d4"),  # with d4, some of the time
    (22, "rand05"),  # 5 % at random per event
    (22, "not_d11"),  # some of the events without d11
]
assert sum(s for s, _ in V_BLOCKS) == N_V


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def round_sig(x, digits=4):
    """Round to `digits` significant digits, so that repr() prints at most that many."""
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    nz = np.isfinite(x) & (x != 0)
    mag = np.floor(np.log10(np.abs(x[nz]))).astype(np.int64)
    shift = digits - 1 - mag
    v = x[nz]
    pos = shift >= 0
    # divide by an exact power of ten (not multiply by a tiny one) to get the shortest repr
    p = np.power(10.0, np.abs(shift))
    r = np.empty_like(v)
    r[pos] = np.round(v[pos] * p[pos]) / p[pos]
    r[~pos] = np.round(v[~pos] / p[~pos]) * p[~pos]
    out[nz] = r
    return out


def generate(n_events, n_users, days, seed, burst_rate=0.012, rule_rate=0.024, sharpness=2.0):
    """Events in time order: times (ms since START), user index, {name: values with NaN for
    missing}, labels, and which events belong to account-takeover bursts."""
    rng = np.random.default_rng(seed)
    span_ms = days * DAY_MS

    # ---- cards (users) -------------------------------------------------------------------
    U = n_users
    activity = rng.lognormal(0.0, 1.0, U)
    # 15 % of cards are issued during the span (their events start then): new-card fraud risk
    card_start = np.where(rng.random(U) < 0.15, rng.uniform(0, span_ms * 0.9, U),
                          -rng.uniform(1, 600, U) * DAY_MS)
    amount_scale = rng.lognormal(3.6, 0.8, U)  # usual amount ~ 37
    pref_hour = (rng.normal(14, 4, U)) % 24
    hour_sd = rng.uniform(1.0, 4.0, U)
    home_dist = rng.lognormal(1.5, 1.0, U)
    u_card1 = rng.integers(1000, 18400, U)
    u_card2 = rng.integers(100, 600, U)
    u_card3 = np.where(rng.random(U) < 0.9, 150, rng.integers(100, 232, U))
    u_card4 = rng.choice([1, 2, 3, 4], U, p=[0.65, 0.3, 0.04, 0.01])  # network
    u_card5 = rng.choice([226, 224, 166, 102, 117, 138, 195], U)
    u_card6 = rng.choice([1, 2], U, p=[0.75, 0.25])  # 1 debit, 2 credit
    u_addr1 = rng.integers(100, 540, U)
    u_addr2 = np.where(rng.random(U) < 0.95, 87, rng.integers(10, 102, U))
    # e-mail domain codes 0..59, Zipf-like popularity
    email_p = 1.0 / np.arange(1, 61) ** 1.1
    email_p /= email_p.sum()
    u_email = rng.choice(60, U, p=email_p)
    u_c_level = rng.lognormal(0.0, 0.9, U)  # linked addresses/devices of the card
    u_prod_bias = rng.dirichlet([8, 1.2, 0.8, 0.6, 0.4], U)
    u_browser = rng.integers(0, 130, U)
    u_os = rng.integers(0, 75, U)
    u_screen = rng.integers(0, 260, U)
    u_rand10 = rng.random(U) < 0.1

    # high-risk codes of the label-encoded categoricals: scattered, so no order helps
    RISKY_EMAIL = np.sort(rng.choice(np.arange(2, 60), 8, replace=False))
    RISKY_BROWSER = np.sort(rng.choice(130, 16, replace=False))
    RISKY_SCREEN = np.sort(rng.choice(260, 26, replace=False))
    RISKY_ADDR = np.sort(rng.choice(np.arange(100, 540), 40, replace=False))
    RISKY_CARD5 = np.array([102, 195])

    # ---- account-takeover episodes ---------------------------------------------------------
    n_burst_target = int(n_events * burst_rate)
    burst_users, burst_times, burst_rank = [], [], []
    total = 0
    while total < n_burst_target:
        u = int(rng.integers(U))
        lo = max(0.0, card_start[u])
        t0 = rng.uniform(lo, span_ms)
        k = 1 + rng.geometric(0.3)
        gaps = rng.exponential(25 * 60_000, k)  # ~25 min apart
        gaps[0] = 0
        ts = t0 + np.cumsum(gaps)
        ts = ts[ts < span_ms]
        burst_users.append(np.full(len(ts), u))
        burst_times.append(ts)
        burst_rank.append(np.arange(len(ts)))
        total += len(ts)
    b_user = np.concatenate(burst_users)
    b_time = np.concatenate(burst_times)
    b_rank = np.concatenate(burst_rank)

    # ---- ordinary events -----------------------------------------------------------------
    n_legit = n_events - len(b_user)
    # more events for cards that exist longer within the span
    life = span_ms - np.maximum(card_start, 0)
    w = activity * life
    l_user = rng.choice(U, n_legit, p=w / w.sum())
    lo = np.maximum(card_start[l_user], 0)
    day = np.floor((lo + rng.random(n_legit) * (span_ms - lo)) / DAY_MS)
    hour = (pref_hour[l_user] + rng.normal(0, 1, n_legit) * hour_sd[l_user]) % 24
    l_time = day * DAY_MS + hour * HOUR_MS
    l_time = np.clip(l_time, lo, span_ms - 1)

    user = np.concatenate([l_user, b_user])
    t = np.concatenate([l_time, b_time])
    burst = np.concatenate([np.zeros(n_legit, bool), np.ones(len(b_user), bool)])
    rank = np.concatenate([np.zeros(n_legit, np.int64), b_rank])
    order = np.argsort(t, kind="stable")
    user, t, burst, rank = user[order], np.floor(t[order]), burst[order], rank[order]
    N = len(t)

    # per-user previous event (time order), for d3 and c-features
    by_user = np.lexsort((t, user))
    prev = np.full(N, -1)
    same = user[by_user][1:] == user[by_user][:-1]
    prev[by_user[1:][same]] = by_user[:-1][same]
    since_prev_days = np.where(prev >= 0, (t - t[np.maximum(prev, 0)]) / DAY_MS, np.nan)

    cols = {}

    def put(name, values, present=None):
        v = np.asarray(values, dtype=np.float64)
        if present is not None:
            v = np.where(present, v, np.nan)
        cols[name] = v

    # product: burst events favour product 1 ("C"-like)
    cum = np.cumsum(u_prod_bias[user], axis=1)
    r = rng.random(N)
    product = (r[:, None] > cum).sum(axis=1)
    product = np.where(burst & (rng.random(N) < 0.45), 1, np.minimum(product, 4))

    # amount: the card's usual scale, by product; bursts test small then spend big
    prod_mult = np.array([1.0, 0.7, 1.6, 0.9, 2.2])[product]
    amount = amount_scale[user] * prod_mult * rng.lognormal(0, 0.55, N)
    test = burst & (rank == 0) & (rng.random(N) < 0.5)
    big = burst & ~test
    amount = np.where(test, rng.uniform(1, 10, N), amount)
    amount = np.where(big, amount * rng.lognormal(0.9, 0.6, N), amount)
    amount = np.round(amount, 2)
    amount = np.where((product == 0) & (rng.random(N) < 0.3), np.floor(amount) + 0.95, amount)
    amount = np.maximum(amount, 0.5)
    put("amount", amount)
    put("product_cd", product)

    # card and address attributes (the thief uses the card, so these stay)
    put("card1", u_card1[user])
    put("card2", u_card2[user], rng.random(N) > 0.015)
    put("card3", u_card3[user])
    put("card4", u_card4[user])
    put("card5", u_card5[user], rng.random(N) > 0.007)
    put("card6", u_card6[user])
    addr_present = np.where(product == 1, rng.random(N) < 0.1, rng.random(N) < 0.93)
    put("addr1", u_addr1[user], addr_present)
    put("addr2", u_addr2[user], addr_present)

    # location: distance from the card's usual places (vigil's location_new uses it)
    dist_present = (product == 0) & addr_present & (rng.random(N) < 0.6)
    dist = home_dist[user] * rng.exponential(1.0, N)
    dist = np.where(burst, dist + rng.lognormal(5.5, 1.0, N), dist)
    put("location_distance", np.round(dist), dist_present)
    put("dist2", np.round(rng.lognormal(3, 1.5, N)), ~dist_present & (product != 0) & (rng.random(N) < 0.25))

    # e-mail domains: the thief often brings his own
    p_email = np.where(burst & (rng.random(N) < 0.5), rng.choice(60, N, p=email_p), u_email[user])
    p_email = np.where(burst & (rng.random(N) < 0.25), rng.choice(RISKY_EMAIL, N), p_email)
    put("p_email", p_email, rng.random(N) < 0.86)
    r_email = np.where(rng.random(N) < 0.7, p_email, rng.choice(60, N, p=email_p))
    put("r_email", r_email, (product >= 1) & (rng.random(N) < 0.6) | (rng.random(N) < 0.05))

    # c1-c14: counts tied to the card's linked addresses/devices, heavy-tailed
    c_level = u_c_level[user] * np.where(burst, rng.lognormal(0.7, 0.5, N), 1.0)
    c_lat = np.log(c_level) + rng.normal(0, 0.35, N)
    c_w = rng.uniform(0.6, 1.6, 14)
    c_scale = rng.uniform(0.5, 3.0, 14)
    C = np.empty((N, 14))
    for k in range(14):
        lam = c_scale[k] * np.exp(c_w[k] * c_lat)
        C[:, k] = rng.poisson(lam)
    C[:, 2] = (rng.random(N) < 0.02) * rng.integers(1, 4, N)  # c3: almost always 0
    for k in range(14):
        put(f"c{k + 1}", C[:, k])

    # d1-d15: days since card start, since previous event, ...
    d1 = np.floor((t - card_start[user]) / DAY_MS)
    put("d1", d1)
    put("d2", d1, d1 > 0)
    put("d3", np.floor(since_prev_days), (prev >= 0) & (rng.random(N) < 0.55))
    d4_present = rng.random(N) < np.where(product == 0, 0.75, 0.3)
    put("d4", np.floor(d1 * rng.uniform(0.2, 1.0, N)), d4_present)
    d_rates = [0.5, 0.1, 0.05, 0.05, 0.1, 0.45, 0.15, 0.12, 0.6, 0.55, 0.35]
    d11_present = (product == 0) & (rng.random(N) < 0.55)
    for k, rate in zip(range(5, 16), d_rates):
        present = rng.random(N) < rate
        if k == 11:
            present = d11_present
        if k == 15:  # d15 goes with d4 mostly
            present = d4_present & (rng.random(N) < 0.85)
        if k in (8, 9):  # fractional-day columns
            vals = np.round(rng.random(N), 3) if k == 9 else np.round(rng.exponential(50, N), 2)
        else:
            vals = np.floor(d1 * rng.uniform(0, 1, N) + rng.exponential(5, N))
        put(f"d{k}", vals, present)
    d15_present = ~np.isnan(cols["d15"])

    # m1-m9: match flags (0/1, m4 has 3 codes), in blocks
    m_block = (product == 0) & (rng.random(N) < 0.5)
    for k in range(1, 4):
        put(f"m{k}", (rng.random(N) < np.where(burst, 0.6, 0.93)).astype(float), m_block)
    m4_present = rng.random(N) < np.where(product == 0, 0.45, 0.6)
    m4 = rng.choice([0, 1, 2], N, p=[0.6, 0.25, 0.15])
    m4 = np.where(burst & (rng.random(N) < 0.3), 2, m4)
    put("m4", m4, m4_present)
    m5_block = rng.random(N) < 0.42
    for k in range(5, 10):
        put(f"m{k}", (rng.random(N) < rng.uniform(0.3, 0.7)).astype(float), m5_block)

    # identity block: present for a minority, more for some products and for thieves
    id_p = np.array([0.12, 0.85, 0.55, 0.65, 0.45])[product]
    id_present = rng.random(N) < np.where(burst, np.maximum(id_p, 0.6), id_p)
    browser = np.where(burst & (rng.random(N) < 0.6), rng.choice(RISKY_BROWSER, N), u_browser[user])
    browser = np.where(rng.random(N) < 0.05, rng.integers(0, 130, N), browser)
    os_code = np.where(burst & (rng.random(N) < 0.5), rng.integers(0, 75, N), u_os[user])
    screen = np.where(burst & (rng.random(N) < 0.5), rng.integers(0, 260, N), u_screen[user])
    id_vals = {
        "id_01": -5.0 * rng.poisson(np.where(burst, 1.2, 0.4)),
        "id_02": np.round(rng.lognormal(11.5, 1.2, N)),
        "id_03": rng.poisson(0.2, N),
        "id_04": -rng.poisson(0.1, N),
        "id_05": rng.poisson(np.where(burst, 3.0, 1.0)),
        "id_06": -rng.poisson(np.where(burst, 4.0, 2.0)),
        "id_07": rng.normal(10, 8, N).round(),
        "id_08": rng.normal(-40, 20, N).round(),
        "id_09": rng.poisson(0.15, N),
        "id_10": -rng.poisson(0.1, N),
        "id_11": np.where(rng.random(N) < 0.9, 100.0, rng.uniform(90, 100, N).round(2)),
    }
    for k in range(12, 39):
        id_vals[f"id_{k:02d}"] = rng.integers(0, [2, 4, 30, 3, 3, 5, 20, 600, 500, 100, 30, 20, 100, 40, 300,
                                                  2, 2, 20, 250, 130, 4, 75, 260, 3, 2, 2, 2][k - 12], N)
    id_vals["id_31"] = browser
    id_vals["id_30"] = os_code
    id_vals["id_33"] = screen
    id_vals["id_12"] = np.where(burst & (rng.random(N) < 0.5), 1, (rng.random(N) < 0.2).astype(int))  # "new"
    # sub-blocks of identity: core always, device block sometimes, rare columns rarely
    id_sub = {k: id_present for k in ["id_01", "id_02", "id_11", "id_12", "id_15", "id_28", "id_29"]}
    dev_block = id_present & (rng.random(N) < 0.55)
    rare_block = id_present & (rng.random(N) < 0.12)
    for name in id_vals:
        if name in id_sub:
            present = id_sub[name]
        elif name in ("id_03", "id_04", "id_07", "id_08", "id_09", "id_10", "id_21", "id_22", "id_23",
                      "id_24", "id_25", "id_26", "id_27"):
            present = rare_block
        else:
            present = dev_block
        put(name, id_vals[name], present)
    browser_present = dev_block

    # V blocks: redundant transforms of a few latent factors, present/absent per block
    lat = np.stack([
        np.log1p(C[:, 0]),
        np.log1p(np.maximum(d1, 0)) / 2,
        np.log(amount) - 3.5,
        rng.normal(0, 1, N),
        np.where(burst, 1.0, 0.0) * rng.normal(1.0, 0.7, N),  # thief signal, weak per column
    ], axis=1)
    presence = {
        "d11": d11_present,
        "not_d11": ~d11_present & (rng.random(N) < 0.15),
        "m": m_block & (rng.random(N) < 0.7),
        "prod0": (product == 0) & (rng.random(N) < 0.3),
        "id": id_present & (rng.random(N) < 0.9),
        "c_hi": C[:, 0] >= 6,
        "rand10": u_rand10[user],
        "prod12": np.isin(product, [1, 2]) & (rng.random(N) < 0.9),
        "d4": d4_present & (rng.random(N) < 0.2),
        "rand05": rng.random(N) < 0.05,
    }
    j = 1
    block_of, kind_of = {}, {}
    for b, (size, rule) in enumerate(V_BLOCKS):
        pres = presence[rule]
        Wb = rng.normal(0, 1, (size, lat.shape[1])) * np.array([1.0, 0.6, 0.5, 0.4, 0.35])
        kinds = rng.choice(["count", "amount", "binary", "cont"], size, p=[0.5, 0.2, 0.15, 0.15])
        for i in range(size):
            x = lat @ Wb[i] + rng.normal(0, 0.3, N)
            if kinds[i] == "count":
                v = np.floor(np.expm1(np.maximum(x, 0)))
            elif kinds[i] == "amount":
                v = np.round(amount * sigmoid(x), 2)
            elif kinds[i] == "binary":
                v = (x > 0.5).astype(float)
            else:
                v = x
            put(f"v{j}", v, pres)
            block_of[j] = b
            kind_of[j] = kinds[i]
            j += 1

    # ---- rule-like fraud on ordinary traffic ----------------------------------------------
    def isin(name, values):
        return np.isin(np.nan_to_num(cols[name], nan=-1), values)

    def val(name, fill=np.nan):
        return np.nan_to_num(cols[name], nan=fill)

    # a heavy-tailed count column of the "m" block: high values are risky
    heavy = next(f"v{j}" for j in block_of if V_BLOCKS[block_of[j]][1] == "m" and kind_of[j] == "count")
    v_heavy = val(heavy, 0)
    z = (
        1.0 * (product == 1)
        + 2.2 * isin("p_email", RISKY_EMAIL)
        + 2.2 * isin("addr1", RISKY_ADDR)
        + 2.2 * (browser_present & isin("id_31", RISKY_BROWSER))
        + 2.0 * (browser_present & isin("id_33", RISKY_SCREEN))
        + 2.2 * ((u_card1[user] // 100) % 23 == 5)  # narrow card1 ranges (issuer BINs)
        + 1.2 * isin("card5", RISKY_CARD5) * (u_card4[user] == 2)
        + 2.6 * ((C[:, 12] <= 1) & (d1 < 3))
        + 2.0 * (v_heavy > np.nanquantile(cols[heavy], 0.95))
        + 1.8 * ((amount > 50) & (amount < 120) & (product == 0) & (u_card6[user] == 2))
        + 2.0 * ((product == 2) & (val("m4", -1) == 2))
        + 1.6 * (id_present & ~presence["prod0"] & (product == 0))
        + 1.2 * (~addr_present & (product != 1))
        + 1.5 * (d4_present & ~d15_present)
        + 1.6 * ((C[:, 4] == 0) & (C[:, 0] > 4))
        + rng.normal(0, 0.3, N)
    )
    z = z * sharpness
    # intercept chosen so that rule-like fraud makes up `rule_rate` of the events
    lo, hi = -40.0, 10.0
    for _ in range(60):
        bias = (lo + hi) / 2
        lo, hi = (bias, hi) if sigmoid(z + bias).mean() < rule_rate else (lo, bias)
    rule_fraud = rng.random(N) < sigmoid(z + bias)
    label = (burst | rule_fraud).astype(np.int8)
    return t, user, cols, label, burst


def write(path, idx, t, user, names, M, label, id_width, chunk=50_000):
    """Write events idx (ascending) as JSON lines; NaN entries of M are left out."""
    keys = np.array([f'"{name}":' for name in names], dtype=object)
    epoch_ms = int(START.timestamp() * 1000)
    with open(path, "w") as f:
        for lo in range(0, len(idx), chunk):
            rows = idx[lo:lo + chunk]
            block = M[rows] + 0.0  # no negative zeros
            r, c = np.nonzero(~np.isnan(block))
            # format each distinct value once; integral values as integers (3.0 -> "3")
            uniq, inv = np.unique(block[r, c], return_inverse=True)
            text = [repr(x) for x in uniq.tolist()]
            text = np.array([s[:-2] if s.endswith(".0") else s for s in text], dtype=object)
            items = (keys[c] + text[inv]).tolist()
            ends = np.searchsorted(r, np.arange(1, len(rows) + 1)).tolist()
            ms = t[rows].astype(np.int64) + epoch_ms
            stamps = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms").tolist()
            lines = []
            a = 0
            for k, (i, u, y) in enumerate(zip(rows.tolist(), user[rows].tolist(), label[rows].tolist())):
                b = ends[k]
                lines.append(
                    f'{{"eventId":"sp-{i + 1:0{id_width}d}","timestamp":"{stamps[k]}Z",'
                    f'"userId":"card-{u}","features":{{{",".join(items[a:b])}}},"label":{y}}}\n'
                )
                a = b
            f.write("".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data_dir = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
    p.add_argument("--events", type=int, default=500_000)
    p.add_argument("--users", type=int, default=30_000, help="cards (userIds)")
    p.add_argument("--days", type=int, default=90, help="event-time span")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--burst-rate", type=float, default=0.012, help="share of account-takeover events")
    p.add_argument("--rule-rate", type=float, default=0.024, help="share of rule-like fraud events")
    p.add_argument("--sharpness", type=float, default=2.0,
                   help="slope of the rule-like fraud's logit (lower: noisier labels, "
                        "smaller tree advantage)")
    p.add_argument("--test-share", type=float, default=0.2, help="last share of events (by time) for testing")
    p.add_argument("--out", default=data_dir, help="output folder (default: the repository's data/)")
    p.add_argument("--prefix", default="sparse", help="file names PREFIX.train.jsonl, PREFIX.test.jsonl")
    a = p.parse_args()
    start = time.time()
    t, user, cols, label, _ = generate(a.events, a.users, a.days, a.seed,
                                       a.burst_rate, a.rule_rate, a.sharpness)
    names = list(cols)
    M = np.empty((len(t), len(names)))
    for k, name in enumerate(names):
        M[:, k] = round_sig(cols[name])
    del cols
    n = len(t)
    cut = int(round(n * (1 - a.test_share)))
    os.makedirs(a.out, exist_ok=True)
    width = len(str(n))
    for part, idx in (("train", np.arange(cut)), ("test", np.arange(cut, n))):
        path = os.path.join(a.out, f"{a.prefix}.{part}.jsonl")
        write(path, idx, t, user, names, M, label, width)
        present = (~np.isnan(M[idx])).sum(axis=1).mean()
        print(f"{path}: {len(idx)} events, {int(label[idx].sum())} fraud "
              f"({label[idx].mean():.2%}), {len(names)} inputs, {present:.0f} present on average",
              file=sys.stderr)
    print(f"done in {time.time() - start:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
