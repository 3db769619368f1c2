"""The CPU engine's compiled kernels that call other compiled functions, as module-level numba
functions (numba does not cache a closure's calls into another closure). Importing a module here
imports numba; the engine's modules import them on first use."""
