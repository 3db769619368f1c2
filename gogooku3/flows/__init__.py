"""Weekly investor-type flows (trades_spec) expanded to point-in-time daily rows, and their
attachment to stocks. Pure Polars; the lake I/O lives in :mod:`gogooku3.flows.io` (the only
module that touches the lake, which it receives as an argument).

The usability rule and every derived column are documented in :mod:`gogooku3.flows.expand`;
the 2022 market restructuring in :mod:`gogooku3.flows.sections`.
"""

from gogooku3.flows.attach import attach_flows_to_stocks
from gogooku3.flows.expand import (
    FLOW_FEATURE_COLUMNS,
    OUTPUT_SCHEMA,
    FlowHistory,
    empty_output,
    expand_trades_spec,
    usable_date,
)
from gogooku3.flows.io import (
    TradesSpecCoverageError,
    expand_to_lake,
    last_determined_day,
    provisional_through,
)
from gogooku3.flows.sections import (
    MARKET_SECTIONS,
    PREDECESSORS,
    RESTRUCTURING_DATE,
    SUCCESSORS,
    SectionLineage,
    fallback_section_for_market_code,
    section_for_market_code,
)

__all__ = [
    "FLOW_FEATURE_COLUMNS",
    "MARKET_SECTIONS",
    "OUTPUT_SCHEMA",
    "PREDECESSORS",
    "RESTRUCTURING_DATE",
    "SUCCESSORS",
    "FlowHistory",
    "SectionLineage",
    "TradesSpecCoverageError",
    "attach_flows_to_stocks",
    "empty_output",
    "expand_to_lake",
    "expand_trades_spec",
    "fallback_section_for_market_code",
    "last_determined_day",
    "provisional_through",
    "section_for_market_code",
    "usable_date",
]
