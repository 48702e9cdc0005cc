"""Random-dimension control: N SAE dimensions drawn at random in place of D_N.

The draws are the same for every domain (seeded by ``sts.control_seed`` and N only), since a
correlation across domains needs one fixed dimension set per draw; each draw gives its own
STS_act and STS_icl, and the report shows the spread of their correlations with the observed
change next to STS's (``analysis.comparison``)."""

from __future__ import annotations

import numpy as np

from stsflow.scores import sts


def random_dim_sets(width: int, n_top: int, draws: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng([int(seed), int(n_top)])
    return [np.sort(rng.choice(width, size=min(n_top, width), replace=False))
            for _ in range(draws)]


def random_dim_scores(x, draws: int) -> dict:
    """``rand_act`` and ``rand_icl``: lists of one score per draw."""
    sets = random_dim_sets(x.plain["sae"].width, x.n_top, draws, x.control_seed)
    return {"rand_act": [sts.act(d, x.plain["sae"]) for d in sets],
            "rand_icl": [sts.icl(d, x.icl["sae"]) for d in sets]}
