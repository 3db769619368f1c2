"""The Airflow Assets for the lake's tables: what downstream DAGs schedule on.

One asset per raw table, named after the lake layout (``raw/<dataset>``). The URI is logical
(``gogooku3://lake/raw/<dataset>``), not the physical location: the same DAGs run against a local
lake or ``s3://...``, and a downstream DAG should not change when the lake moves. Each asset event
carries the physical lake URI, the JST date and the partition's row count and checksum in its
``extra`` (see ``publish`` in ``jquants_daily``).

Downstream DAGs schedule on these constants::

    from gogooku3_airflow.assets import RAW_DAILY_QUOTES, RAW_TOPIX
    @dag(schedule=RAW_DAILY_QUOTES & RAW_TOPIX, ...)
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

#: The asset group shown in the UI.
ASSET_GROUP = "gogooku3-lake"


def lake_asset(layer: str, dataset: str) -> Asset:
    """The asset for ``<layer>/<dataset>`` of the lake (``raw``, ``interim``, ``features``)."""
    return Asset(
        name=f"gogooku3.{layer}.{dataset}",
        uri=f"gogooku3://lake/{layer}/{dataset}",
        group=ASSET_GROUP,
    )


RAW_LISTED_INFO = lake_asset("raw", "listed_info")
RAW_DAILY_QUOTES = lake_asset("raw", "daily_quotes")
RAW_STATEMENTS = lake_asset("raw", "statements")
RAW_TOPIX = lake_asset("raw", "topix")
RAW_TRADES_SPEC = lake_asset("raw", "trades_spec")
RAW_INDICES = lake_asset("raw", "indices")
RAW_SHORT_SELLING = lake_asset("raw", "short_selling")
RAW_WEEKLY_MARGIN_INTEREST = lake_asset("raw", "weekly_margin_interest")
RAW_EARNINGS_CALENDAR = lake_asset("raw", "earnings_calendar")
RAW_DIVIDENDS = lake_asset("raw", "dividends")
RAW_TRADING_CALENDAR = lake_asset("raw", "trading_calendar")
RAW_FUTURES = lake_asset("raw", "futures")
RAW_INDEX_OPTION = lake_asset("raw", "index_option")
RAW_DAILY_MARGIN_INTEREST = lake_asset("raw", "daily_margin_interest")
RAW_SHORT_SELLING_POSITIONS = lake_asset("raw", "short_selling_positions")

#: The point-in-time daily investor flows (``trades_spec_weekly``) and the feature set (``features_daily``).
INTERIM_TRADES_SPEC_DAILY = lake_asset("interim", "trades_spec_daily")
FEATURES = lake_asset("features", "features")

#: Raw table name -> asset, for every raw table a DAG publishes.
RAW_ASSETS: dict[str, Asset] = {
    "listed_info": RAW_LISTED_INFO,
    "daily_quotes": RAW_DAILY_QUOTES,
    "statements": RAW_STATEMENTS,
    "topix": RAW_TOPIX,
    "trades_spec": RAW_TRADES_SPEC,
    "indices": RAW_INDICES,
    "short_selling": RAW_SHORT_SELLING,
    "weekly_margin_interest": RAW_WEEKLY_MARGIN_INTEREST,
    "earnings_calendar": RAW_EARNINGS_CALENDAR,
    "dividends": RAW_DIVIDENDS,
    "trading_calendar": RAW_TRADING_CALENDAR,
    "futures": RAW_FUTURES,
    "index_option": RAW_INDEX_OPTION,
    "daily_margin_interest": RAW_DAILY_MARGIN_INTEREST,
    "short_selling_positions": RAW_SHORT_SELLING_POSITIONS,
}

#: The alias ``jquants_daily``'s ``publish`` emits through: it attaches one event per raw table it
#: actually wrote (a run restricted by ``dag_run.conf['endpoints']`` publishes only those), which a
#: static outlet list cannot express. DAGs scheduled on the concrete assets above are triggered.
JQUANTS_DAILY_RAW = AssetAlias(name="gogooku3.raw.jquants_daily")

#: The served model (``walk_forward_retrain``): an event per retrain, whether or not it was promoted;
#: the extra says the new version, the champion now and the decision.
MODEL_ATFT_GAT_FAN = Asset(
    name="gogooku3.models.atft_gat_fan", uri="gogooku3://models/atft-gat-fan", group="gogooku3-models"
)
