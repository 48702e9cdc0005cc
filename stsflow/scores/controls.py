"""Random-dimension control: random sets of SAE dimensions scored in place of D_N.

**Like with like.** D_N holds only dimensions that moved on the SFT queries (``scores.shift``),
and a dimension can only move where it fires: in the SFT set's plain run or with the
demonstrations in front. A set drawn uniformly from the whole width of a sparse SAE holds mostly
dimensions that never fire on these data (on a dictionary with a tenth of its features live, a
random 100-set holds about ten live ones), so STS on D_N would beat it for being alive, not for
being chosen by the shift. The draws are therefore made among the *live* dimensions, those that
could have entered D_N: a non-zero activation on a counted token of the SFT set's plain run
(its statistics' ``nnz``) or a non-zero predicted shift (which needs a non-zero activation in
the ICL run, the only other place a dimension can move); their number, ``n_live``, is recorded
beside the draws. Each set has as many dimensions as D_N (``n_effective``), or all the live
ones when fewer.

The pool is the SFT set's, not the domain's: the draws must be the same for every domain
(seeded by ``sts.control_seed`` and N only), since a correlation across domains needs one fixed
dimension set per draw, and a pool taken from each domain, or from all configured domains,
would make one domain's control depend on another's data. Each draw gives its own STS_act and
STS_icl, and the report shows the spread of their correlations with the observed change next to
STS's (``analysis.comparison``). The uniform draw over the whole width is not kept as an option:
it answers no question the live draw does not answer better.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from stsflow.features.stats import Stats
from stsflow.scores import sts


def live_dims(sft_plain: Stats, shift: pa.Table) -> np.ndarray:
    """The dimensions that could enter D_N (sorted): firing on a counted token of the SFT set's
    plain run, or with a non-zero predicted shift."""
    if sft_plain.width != shift.num_rows:
        raise ValueError(f"the SFT set's plain statistics ({sft_plain.width} dimensions) and the "
                         f"shift ({shift.num_rows}) are not of the same SAE")
    fires = np.asarray(sft_plain.nnz) > 0
    moved = np.zeros(shift.num_rows, dtype=bool)
    moved[shift["dim"].to_numpy()] = shift["shift"].to_numpy() > 0
    return np.flatnonzero(fires | moved).astype(np.int64)


def random_dim_sets(pool: np.ndarray, size: int, draws: int, seed: int,
                    n_top: int) -> list[np.ndarray]:
    """``draws`` sets of ``min(size, len(pool))`` dimensions of ``pool`` each, without
    replacement within a set, from a generator seeded by (``seed``, ``n_top``): the same for
    every domain of one N."""
    rng = np.random.default_rng([int(seed), int(n_top)])
    k = min(int(size), len(pool))
    return [np.sort(rng.choice(pool, size=k, replace=False)) for _ in range(draws)]


def random_dim_scores(x, draws: int) -> dict:
    """``rand_act`` and ``rand_icl`` (lists of one score per draw) and ``n_live``, the pool the
    draws come from; no draws (empty lists) where D_N or the pool is empty."""
    if x.sft_plain is None:
        raise ValueError("the random-dimension control needs the SFT set's plain statistics "
                         "(ScoreFiles: sft_plain)")
    pool = live_dims(x.sft_plain, x.shifts["sae"])
    size = len(x.dims("sae"))
    sets = (random_dim_sets(pool, size, draws, x.control_seed, x.n_top)
            if size and len(pool) else [])
    return {"rand_act": [sts.act(d, x.plain["sae"]) for d in sets],
            "rand_icl": [sts.icl(d, x.icl["sae"]) for d in sets],
            "n_live": int(len(pool))}
