"""The peer table's top-k selection (:func:`gogooku3.features.peers._top_k_kernel` says how it
works). Module-level functions: numba caches a kernel's calls into another compiled function only
when that function is a module global, not a closure."""

from __future__ import annotations

import numpy as np

from gogooku3.features.compiled import kernel
from gogooku3.features.peers import _BLOCK, _LANES


@kernel()
def insert(values, positions, v, position):  # noqa: ANN001, ANN202
    """Put ``v`` (at ``position``) into the descending ``values`` after every value >= v,
    moving ``positions`` along and dropping the last; nothing if ``v`` does not beat it."""
    p = values.shape[0] - 1
    if not v > values[p]:
        return
    while p > 0 and values[p - 1] < v:
        values[p] = values[p - 1]
        positions[p] = positions[p - 1]
        p -= 1
    values[p] = v
    positions[p] = position


# no NaN reaches the kernel (correlations of finite z-scores; excluded is 0 or -inf), which
# is what lets the maxima be reordered into lanes; -inf is a value here, so not "ninf"
@kernel(fastmath={"nnan", "nsz", "reassoc"})
def select(corr, excluded, usable, lo, peers, weight):  # noqa: ANN001, ANN202
    rows, width = corr.shape
    k = peers.shape[1]
    n_blocks = width // _BLOCK
    block_max = np.empty(n_blocks, np.float32)
    lanes = np.empty(_LANES, np.float32)
    floor_k = np.empty(k, np.float32)
    unused = np.empty(k, np.int64)
    for i in range(rows):
        weight[i, :] = -np.inf
        peers[i, :] = -1
        if not usable[i]:
            continue
        me = lo + i
        for b in range(n_blocks):
            base = b * _BLOCK
            for lane in range(_LANES):
                lanes[lane] = corr[i, base + lane] + excluded[base + lane]
            for step in range(_LANES, _BLOCK, _LANES):
                for lane in range(_LANES):
                    v = corr[i, base + step + lane] + excluded[base + step + lane]
                    lanes[lane] = v if v > lanes[lane] else lanes[lane]
            best = lanes[0]
            for lane in range(1, _LANES):
                best = lanes[lane] if lanes[lane] > best else best
            block_max[b] = best
        own = me // _BLOCK  # the own block's maximum without the code itself (its 1.0)
        best = -np.inf
        for j in range(own * _BLOCK, own * _BLOCK + _BLOCK):
            v = corr[i, j] + excluded[j]
            if j != me and v > best:
                best = v
        block_max[own] = best
        floor_k[:] = -np.inf
        for b in range(n_blocks):
            insert(floor_k, unused, block_max[b], b)
        floor = floor_k[k - 1]
        row_weight, row_peers = weight[i], peers[i]
        for b in range(n_blocks):
            if block_max[b] < floor or block_max[b] == -np.inf:
                continue
            for j in range(b * _BLOCK, b * _BLOCK + _BLOCK):
                v = corr[i, j] + excluded[j]
                if v >= floor and j != me:
                    insert(row_weight, row_peers, v, j)
