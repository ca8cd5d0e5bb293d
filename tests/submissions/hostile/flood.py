import warnings
import torch
def distances(query, items):
    warnings.warn("old API", DeprecationWarning)
    print("x" * 10_000_000)
    return (2.0 - 2.0 * query @ items.T).clamp_min(0.0)
