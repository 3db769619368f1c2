"""Feature library: one declarative catalogue compiled to Polars (CPU) or cuDF (GPU).

::

    from gogooku3.features import build_features, build_features_to_lake
    df = build_features(daily_quotes, listed_info=li, topix=tp, statements=st, flows=fl,
                        start=date(2024, 1, 4), end=date(2024, 12, 30), engine="cpu")

* :mod:`~gogooku3.features.spec` - the catalogue's vocabulary: :class:`Feature`, phases, validation.
* :mod:`~gogooku3.features.ops` - the operation table: per op its grouping, arity, meaning,
  look-back rule and its Polars and cuDF implementations.
* :mod:`~gogooku3.features.catalogue` - every feature, defined once (``include/features/catalogue.json``).
* :mod:`~gogooku3.features.prepare` - inputs -> base panel (statements as of T+1 with the 15:00 cutoff).
* :mod:`~gogooku3.features.engine_cpu` / :mod:`~gogooku3.features.engine_gpu` - the two compilers
  (the GPU one imports cuDF only when called).
* :mod:`~gogooku3.features.targets` - ``target_*`` forward returns, a separate step.
* :mod:`~gogooku3.features.build` - :func:`build_features` and the lake shell.
"""

from gogooku3.features.build import (
    ENGINES,
    BuildTimings,
    build_features,
    build_features_to_lake,
    feature_columns,
)
from gogooku3.features.catalogue import FEATURES, OUTPUT_FEATURES, catalogue_records, write_catalogue
from gogooku3.features.prepare import FeatureInputError, prepare_panel, usable_from
from gogooku3.features.targets import TARGET_NAMES, add_targets

__all__ = [
    "ENGINES",
    "FEATURES",
    "OUTPUT_FEATURES",
    "TARGET_NAMES",
    "BuildTimings",
    "FeatureInputError",
    "add_targets",
    "build_features",
    "build_features_to_lake",
    "catalogue_records",
    "feature_columns",
    "prepare_panel",
    "usable_from",
    "write_catalogue",
]
