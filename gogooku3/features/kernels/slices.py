"""The cross-section kernels (:mod:`gogooku3.features.slice_kernels` says what they compute).
Module-level functions: numba caches a kernel's calls into another compiled function only when that
function is a module global, not a closure."""

from __future__ import annotations

import numpy as np

from gogooku3.features.compiled import kernel
from gogooku3.features.slice_kernels import RADIX, RADIX_BITS


@kernel(error_model="numpy")
def moments(x, a, b):  # noqa: ANN001, ANN202
    """(count, mean, std, min, max) of the non-null values of x[a:b]; NaN where undefined."""
    n = 0
    total = 0.0
    lo, hi = np.inf, -np.inf
    for i in range(a, b):
        v = x[i]
        if v == v:
            n += 1
            total += v
            lo = min(lo, v)
            hi = max(hi, v)
    if n == 0:
        return 0, np.nan, np.nan, np.nan, np.nan
    mean = total / n
    if n < 2:
        return n, mean, np.nan, lo, hi
    m2 = 0.0
    for i in range(a, b):
        v = x[i]
        if v == v:
            m2 += (v - mean) * (v - mean)
    return n, mean, np.sqrt(m2 / (n - 1)), lo, hi


@kernel(error_model="numpy")
def ranks(x, xbits, a, b, out, keys, rows, keys2, rows2, counts):  # noqa: ANN001, ANN202
    """Average rank / count of the non-null values of x[a:b] into out[a:b]. A radix sort of
    the values' bits (made to sort as the floats do), 8 bits a pass, a pass skipped where all
    values share that byte: n passes of a slice's 3,700 rows instead of a comparison sort's
    n log n (numba's argsort took longer than Polars' rank)."""
    n = 0
    for i in range(a, b):
        if x[i] == x[i]:
            bits = xbits[i] if x[i] != 0.0 else np.uint64(0)  # -0.0 ranks with 0.0
            # flip a negative's bits, set a positive's sign bit: unsigned order = float order
            keys[n] = ~bits if bits >> np.uint64(63) else bits | np.uint64(1 << 63)
            rows[n] = i
            n += 1
        else:
            out[i] = np.nan
    if n == 0:
        return
    for shift in range(0, 64, RADIX_BITS):
        counts[:] = 0
        for j in range(n):
            counts[(keys[j] >> np.uint64(shift)) & np.uint64(RADIX - 1)] += 1
        if counts.max() == n:
            continue
        total = 0
        for d in range(RADIX):
            c = counts[d]
            counts[d] = total
            total += c
        for j in range(n):
            d = (keys[j] >> np.uint64(shift)) & np.uint64(RADIX - 1)
            keys2[counts[d]] = keys[j]
            rows2[counts[d]] = rows[j]
            counts[d] += 1
        keys, keys2 = keys2, keys
        rows, rows2 = rows2, rows
    j = 0
    while j < n:
        k = j
        while k + 1 < n and keys[k + 1] == keys[j]:
            k += 1
        rank = (j + k + 2) / 2.0 / n  # ranks j+1 .. k+1 share their average
        for m in range(j, k + 1):
            out[rows[m]] = rank
        j = k + 1


# error_model="numpy": a float division by 0 gives inf or NaN (a flat slice's z), not an exception
@kernel(error_model="numpy")
def over_slices(x, key, stat, k, out):  # noqa: ANN001, ANN202
    # stat: 0 z-score, 1 winsorisation at mean +- k std, 2 demean, 3 rank
    total = x.size
    # the rank's buffers, grown to the largest slice
    keys, rows = np.empty(0, np.uint64), np.empty(0, np.int64)
    keys2, rows2 = np.empty(0, np.uint64), np.empty(0, np.int64)
    counts = np.zeros(RADIX, np.int64)
    a = 0
    while a < total:
        b = a + 1
        while b < total and key[b] == key[a]:
            b += 1
        if b < total and key[b] < key[a]:
            return b  # not in slice order: the caller names the row
        if stat == 3:
            if b - a > keys.size:
                keys, rows = np.empty(b - a, np.uint64), np.empty(b - a, np.int64)
                keys2, rows2 = np.empty(b - a, np.uint64), np.empty(b - a, np.int64)
            ranks(x, x.view(np.uint64), a, b, out, keys, rows, keys2, rows2, counts)
            a = b
            continue
        n, mean, sd, lo, hi = moments(x, a, b)
        for i in range(a, b):
            v = x[i]
            if v != v:
                out[i] = np.nan
            elif stat == 0:
                z = (v - mean) / sd
                # a constant slice's z is null (its rounded std need not be 0); so is a
                # non-finite one (std 0 or null)
                out[i] = z if hi > lo and np.isfinite(z) else np.nan
            elif stat == 1:
                top, bottom = mean + k * sd, mean - k * sd  # NaN with fewer than 2 values
                out[i] = top if v > top else (bottom if v < bottom else v)
            else:
                out[i] = v - mean
        a = b
    return -1
