"""Reference numbers for tests/test_stats.py, computed with rliable itself (not run by the tests).

Run once, in an environment with rliable (``pip install rliable``; rliable 1.2.0 with arch 7.2.0
needs ``pandas<3``), and paste its output into ``tests/test_stats.py``::

    python tests/scripts/rliable_reference.py
"""

import json

import numpy as np
from rliable import library as rly
from rliable import metrics

# Three configurations' normalized scores, (runs = seeds) x (tasks = environments), rounded to
# two decimals so that some runs tie (probability of improvement counts ties as one half).
gen = np.random.default_rng(2021)
SCORES = {
    "a": np.round(gen.normal([0.80, 0.60], 0.08, size=(10, 2)), 2),
    "b": np.round(gen.normal([0.78, 0.58], 0.15, size=(10, 2)), 2),
    "c": np.round(gen.normal([0.70, 0.65], 0.05, size=(7, 2)), 2),
}

if __name__ == "__main__":
    np.random.seed(0)  # rliable's StratifiedBootstrap draws from numpy's global RandomState
    out = {"scores": {k: v.tolist() for k, v in SCORES.items()}}
    for name, func in (("iqm", metrics.aggregate_iqm), ("mean", metrics.aggregate_mean)):
        points, intervals = rly.get_interval_estimates(
            SCORES, lambda x, f=func: np.array([f(x)]), reps=50000
        )
        out[name] = {k: [float(points[k][0]), *map(float, intervals[k][:, 0])] for k in SCORES}
    out["poi"] = {
        f"{x}>{y}": float(metrics.probability_of_improvement(SCORES[x], SCORES[y]))
        for x in SCORES
        for y in SCORES
        if x != y
    }
    print(json.dumps(out, indent=1))
