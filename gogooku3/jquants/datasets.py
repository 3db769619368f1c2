"""The J-Quants datasets the pipeline uses: paths, answer keys and the one canonical lake schema.

This module is the single place where J-Quants' two protocols meet the lake:

* **v2** (current API, ``https://api.jquants.com/v2``): ``x-api-key`` auth, answers shaped
  ``{"data": [...], "pagination_key": ...}``, short field names (``O``, ``AdjC``, ``PubDate`` ...).
* **v1** (the origin system's protocol): id-token auth, answers keyed by dataset name
  (``{"daily_quotes": [...]}``), long field names (``Open``, ``AdjustmentClose`` ...).

The canonical lake schema uses the long, self-describing v1 names, whichever protocol fetched the
rows. Field names follow the published specifications (jpx-jquants.com/spec, and the official
``jquants-api-client`` column lists for v2). The emulator serves exactly these names, the client
maps them back with :func:`to_canonical_name`, and :mod:`gogooku3.jquants.normalize` casts to the
dtypes declared here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl

ApiVersion = Literal["v1", "v2"]
API_VERSIONS: tuple[ApiVersion, ...] = ("v1", "v2")

#: Canonical dataset names; also the CLI's ``--endpoint`` values and the lake's folder names.
DATASET_NAMES = (
    "listed_info",
    "daily_quotes",
    "statements",
    "trades_spec",
    "topix",
    "indices",
    "short_selling",
    "weekly_margin_interest",
    "earnings_calendar",
    "dividends",
    "futures",
    "index_option",
    "daily_margin_interest",
    "short_selling_positions",
)


@dataclass(frozen=True)
class Field:
    """One column of a dataset: canonical (v1, long) name, v2 short name, lake dtype."""

    name: str
    v2: str
    dtype: pl.DataType
    required: bool = False
    #: v1 spelling where it differs from the canonical name (only statements' LocalCode).
    v1: str | None = None
    #: How the API spells "not decided yet" for this field, read and written as null (the dividend
    #: amounts and payable dates: ``"-"``); None: the field has no such spelling.
    undecided: str | None = None
    #: The object the field sits in on the wire, as (v1 key, v2 key): the lake keeps it flat
    #: (daily_margin_interest's publish reasons); None: a top-level field.
    parent: tuple[str, str] | None = None

    def parent_name(self, version: ApiVersion) -> str | None:
        if self.parent is None:
            return None
        return self.parent[0] if version == "v1" else self.parent[1]

    def source_name(self, version: ApiVersion) -> str:
        if version == "v1":
            return self.v1 or self.name
        return self.v2


@dataclass(frozen=True)
class Dataset:
    """A J-Quants dataset as the pipeline sees it.

    ``partition_by`` is the canonical date column that the lake partitions the dataset on
    (``raw/<name>/date=YYYY-MM-DD/``): the trading date for bars, the disclosure date for
    statements, the publication date for trades_spec.
    """

    name: str
    v1_path: str
    v2_path: str
    v1_key: str
    fields: tuple[Field, ...]
    partition_by: str
    key: tuple[str, ...]
    doc: str = ""
    #: ``Code`` is an issue code (4 digits are padded to the 5-digit form); False for index codes.
    code_is_issue: bool = True
    #: The query parameter selecting one partition date, as (v1, v2) spell it: ``date`` for most;
    #: the short-sale reports name their disclosure date.
    date_param: tuple[str, str] = ("date", "date")
    _by_source: dict[str, dict[str, Field]] = field(default_factory=dict, compare=False, repr=False)

    def path(self, version: ApiVersion) -> str:
        return self.v1_path if version == "v1" else self.v2_path

    def date_param_name(self, version: ApiVersion) -> str:
        return self.date_param[0] if version == "v1" else self.date_param[1]

    def data_key(self, version: ApiVersion) -> str:
        """The JSON key holding the rows: ``data`` in v2, the dataset's own key in v1."""
        return self.v1_key if version == "v1" else "data"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """Canonical column -> dtype for the declared columns (extras keep their inferred type)."""
        return {f.name: f.dtype for f in self.fields}

    def field_by_source(self, version: ApiVersion) -> dict[str, Field]:
        """Map of the protocol's own field name -> Field."""
        cached = self._by_source.get(version)
        if cached is None:
            cached = {f.source_name(version): f for f in self.fields}
            self._by_source[version] = cached
        return cached

    def to_canonical_name(self, version: ApiVersion, source: str) -> str:
        """Canonical name for a field as the protocol spells it; unknown fields keep their name."""
        f = self.field_by_source(version).get(source)
        return f.name if f is not None else source

    def to_source_name(self, version: ApiVersion, canonical: str) -> str:
        for f in self.fields:
            if f.name == canonical:
                return f.source_name(version)
        raise KeyError(f"{self.name}: no field {canonical!r}")


def _f(name: str, v2: str, dtype: pl.DataType, required: bool = False, undecided: str | None = None) -> Field:
    return Field(name=name, v2=v2, dtype=dtype, required=required, undecided=undecided)


DATE = pl.Date()
STR = pl.String()
F64 = pl.Float64()
BOOL = pl.Boolean()

LISTED_INFO = Dataset(
    name="listed_info",
    v1_path="/listed/info",
    v2_path="/equities/master",
    v1_key="info",
    partition_by="Date",
    key=("Date", "Code"),
    doc="Listed issues as of a date: company, 17/33 sector codes, market segment.",
    fields=(
        _f("Date", "Date", DATE, True),
        _f("Code", "Code", STR, True),
        _f("CompanyName", "CoName", STR, True),
        _f("CompanyNameEnglish", "CoNameEn", STR),
        _f("Sector17Code", "S17", STR, True),
        _f("Sector17CodeName", "S17Nm", STR),
        _f("Sector33Code", "S33", STR, True),
        _f("Sector33CodeName", "S33Nm", STR),
        _f("ScaleCategory", "ScaleCat", STR),
        _f("MarketCode", "Mkt", STR, True),
        _f("MarketCodeName", "MktNm", STR),
        _f("MarginCode", "Mrgn", STR),
        _f("MarginCodeName", "MrgnNm", STR),
    ),
)

DAILY_QUOTES = Dataset(
    name="daily_quotes",
    v1_path="/prices/daily_quotes",
    v2_path="/equities/bars/daily",
    v1_key="daily_quotes",
    partition_by="Date",
    key=("Date", "Code"),
    doc="Daily OHLCV bars with split adjustment; OHLC null on days without trades.",
    fields=(
        _f("Date", "Date", DATE, True),
        _f("Code", "Code", STR, True),
        _f("Open", "O", F64, True),
        _f("High", "H", F64, True),
        _f("Low", "L", F64, True),
        _f("Close", "C", F64, True),
        _f("UpperLimit", "UL", BOOL),
        _f("LowerLimit", "LL", BOOL),
        _f("Volume", "Vo", F64, True),
        _f("TurnoverValue", "Va", F64, True),
        _f("AdjustmentFactor", "AdjFactor", F64, True),
        _f("AdjustmentOpen", "AdjO", F64),
        _f("AdjustmentHigh", "AdjH", F64),
        _f("AdjustmentLow", "AdjL", F64),
        _f("AdjustmentClose", "AdjC", F64, True),
        _f("AdjustmentVolume", "AdjVo", F64),
    ),
)

#: daily_quotes' price columns: null together on a day without trades.
PRICE_COLUMNS: tuple[str, ...] = (
    "Open",
    "High",
    "Low",
    "Close",
    "AdjustmentOpen",
    "AdjustmentHigh",
    "AdjustmentLow",
    "AdjustmentClose",
)

STATEMENTS = Dataset(
    name="statements",
    v1_path="/fins/statements",
    v2_path="/fins/summary",
    v1_key="statements",
    partition_by="DisclosedDate",
    key=("DisclosureNumber",),
    doc=(
        "Financial statement summaries (kessan tanshin). Values are cumulative from the fiscal "
        "period start. DisclosedTime decides usability: after 15:00 JST counts as next trading day."
    ),
    fields=(
        _f("DisclosedDate", "DiscDate", DATE, True),
        _f("DisclosedTime", "DiscTime", STR, True),
        # v1 calls the issue code LocalCode; the lake calls it Code like every other dataset.
        Field("Code", "Code", STR, True, v1="LocalCode"),
        _f("DisclosureNumber", "DiscNo", STR, True),
        _f("TypeOfDocument", "DocType", STR, True),
        _f("TypeOfCurrentPeriod", "CurPerType", STR),
        _f("CurrentPeriodStartDate", "CurPerSt", DATE),
        _f("CurrentPeriodEndDate", "CurPerEn", DATE),
        _f("CurrentFiscalYearStartDate", "CurFYSt", DATE),
        _f("CurrentFiscalYearEndDate", "CurFYEn", DATE),
        _f("NetSales", "Sales", F64),
        _f("OperatingProfit", "OP", F64),
        _f("OrdinaryProfit", "OdP", F64),
        _f("Profit", "NP", F64),
        _f("EarningsPerShare", "EPS", F64),
        _f("TotalAssets", "TA", F64),
        _f("Equity", "Eq", F64),
        _f("EquityToAssetRatio", "EqAR", F64),
        _f("BookValuePerShare", "BPS", F64),
        _f("CashFlowsFromOperatingActivities", "CFO", F64),
        _f("ForecastNetSales", "FSales", F64),
        _f("ForecastOperatingProfit", "FOP", F64),
        _f("ForecastProfit", "FNP", F64),
        _f("ForecastEarningsPerShare", "FEPS", F64),
        _f("ResultDividendPerShareAnnual", "DivAnn", F64),
        _f(
            "NumberOfIssuedAndOutstandingSharesAtTheEndOfFiscalYearIncludingTreasuryStock",
            "ShOutFY",
            F64,
        ),
    ),
)

#: Investor types in trades_spec: (v1 prefix, v2 prefix).
INVESTOR_TYPES: tuple[tuple[str, str], ...] = (
    ("Proprietary", "Prop"),
    ("Brokerage", "Brk"),
    ("Total", "Tot"),
    ("Individuals", "Ind"),
    ("Foreigners", "Frgn"),
    ("SecuritiesCos", "SecCo"),
    ("InvestmentTrusts", "InvTr"),
    ("BusinessCos", "BusCo"),
    ("OtherCos", "OthCo"),
    ("InsuranceCos", "InsCo"),
    ("CityBKsRegionalBKsEtc", "Bank"),
    ("TrustBanks", "TrstBnk"),
    ("OtherFinancialInstitutions", "OthFin"),
)
#: Measures per investor type: (v1 suffix, v2 suffix). Values in thousands of yen.
INVESTOR_MEASURES: tuple[tuple[str, str], ...] = (
    ("Sales", "Sell"),
    ("Purchases", "Buy"),
    ("Total", "Tot"),
    ("Balance", "Bal"),
)

TRADES_SPEC = Dataset(
    name="trades_spec",
    v1_path="/markets/trades_spec",
    v2_path="/equities/investor-types",
    v1_key="trades_spec",
    partition_by="PublishedDate",
    key=("PublishedDate", "Section", "StartDate"),
    doc=(
        "Weekly trading value by investor type per market Section, published after the week "
        "(usually Thursday). Revisions arrive as extra records with a newer PublishedDate."
    ),
    fields=(
        _f("PublishedDate", "PubDate", DATE, True),
        _f("StartDate", "StDate", DATE, True),
        _f("EndDate", "EnDate", DATE, True),
        _f("Section", "Section", STR, True),
        *(
            _f(f"{v1}{m1}", f"{v2}{m2}", F64, True)
            for v1, v2 in INVESTOR_TYPES
            for m1, m2 in INVESTOR_MEASURES
        ),
    ),
)

#: An index bar's levels, the same fields in TOPIX's own endpoint and the other indices'.
INDEX_OHLC: tuple[Field, ...] = (
    _f("Open", "O", F64, True),
    _f("High", "H", F64, True),
    _f("Low", "L", F64, True),
    _f("Close", "C", F64, True),
)

TOPIX = Dataset(
    name="topix",
    v1_path="/indices/topix",
    v2_path="/indices/bars/daily/topix",
    v1_key="topix",
    partition_by="Date",
    key=("Date",),
    doc="TOPIX daily OHLC.",
    fields=(_f("Date", "Date", DATE, True), *INDEX_OHLC),
)

TRADING_CALENDAR = Dataset(
    name="trading_calendar",
    v1_path="/markets/trading_calendar",
    v2_path="/markets/calendar",
    v1_key="trading_calendar",
    partition_by="Date",
    key=("Date",),
    doc=(
        "JPX trading calendar: HolidayDivision 1 business day, 2 half-day session, 0 non-business "
        "day, 3 non-business day with a holiday derivatives session. A snapshot dataset "
        "(SNAPSHOT_DATASETS): the lake keeps the whole calendar as fetched on a day."
    ),
    fields=(
        _f("Date", "Date", DATE, True),
        _f("HolidayDivision", "HolDiv", STR, True),
    ),
)

INDICES = Dataset(
    name="indices",
    v1_path="/indices",
    v2_path="/indices/bars/daily",
    v1_key="indices",
    partition_by="Date",
    key=("Date", "Code"),
    code_is_issue=False,
    doc=(
        "Daily OHLC of the TSE indices other than TOPIX's own endpoint: here the 33 sector indices "
        "(codes 0040..0060 in Sector33Code order, see SECTOR_INDEX_CODES). Published ~16:30 JST."
    ),
    fields=(_f("Date", "Date", DATE, True), _f("Code", "Code", STR, True), *INDEX_OHLC),
)

SHORT_SELLING = Dataset(
    name="short_selling",
    v1_path="/markets/short_selling",
    v2_path="/markets/short-ratio",
    v1_key="short_selling",
    partition_by="Date",
    key=("Date", "Sector33Code"),
    doc=(
        "Selling turnover by 33-sector per trading day, split into long sales and short sales with "
        "and without the price restriction (yen). Published ~16:30 JST the same day."
    ),
    fields=(
        _f("Date", "Date", DATE, True),
        _f("Sector33Code", "S33", STR, True),
        _f("SellingExcludingShortSellingTurnoverValue", "SellExShortVa", F64, True),
        _f("ShortSellingWithRestrictionsTurnoverValue", "ShrtWithResVa", F64, True),
        _f("ShortSellingWithoutRestrictionsTurnoverValue", "ShrtNoResVa", F64, True),
    ),
)

WEEKLY_MARGIN_INTEREST = Dataset(
    name="weekly_margin_interest",
    v1_path="/markets/weekly_margin_interest",
    v2_path="/markets/margin-interest",
    v1_key="weekly_margin_interest",
    partition_by="Date",
    key=("Date", "Code"),
    doc=(
        "Margin trading balances (shares) per issue at the end of a week: Date is the week's record "
        "date (its last trading day, usually a Friday); published ~16:30 JST on the 2nd trading day "
        "after it (usually Tuesday). No row has a publication date: see gogooku3.pit."
    ),
    fields=(
        _f("Date", "Date", DATE, True),
        _f("Code", "Code", STR, True),
        _f("ShortMarginTradeVolume", "ShrtVol", F64, True),
        _f("LongMarginTradeVolume", "LongVol", F64, True),
        _f("ShortNegotiableMarginTradeVolume", "ShrtNegVol", F64),
        _f("LongNegotiableMarginTradeVolume", "LongNegVol", F64),
        _f("ShortStandardizedMarginTradeVolume", "ShrtStdVol", F64),
        _f("LongStandardizedMarginTradeVolume", "LongStdVol", F64),
        _f("IssueType", "IssType", STR),
    ),
)

EARNINGS_CALENDAR = Dataset(
    name="earnings_calendar",
    v1_path="/fins/announcement",
    v2_path="/equities/earnings-calendar",
    v1_key="announcement",
    partition_by="PublishedDate",
    key=("PublishedDate", "Code"),
    doc=(
        "Scheduled earnings announcement dates. Fields follow the official announcement lists, plus "
        "the publication date (PubDate of v2's /fins/earnings-date history): the real "
        "/fins/announcement answers only the next business day's schedule, without history, so a "
        "point-in-time calendar needs the day each date was announced. A changed date is a new row "
        "with a later PublishedDate. Published ~19:00 JST."
    ),
    fields=(
        _f("PublishedDate", "PubDate", DATE, True),
        _f("Date", "Date", DATE, True),
        _f("Code", "Code", STR, True),
        _f("CompanyName", "CoName", STR),
        _f("FiscalYear", "FY", STR),
        _f("SectorName", "SectorNm", STR),
        _f("FiscalQuarter", "FQ", STR, True),
        _f("Section", "Section", STR),
    ),
)

DIVIDENDS = Dataset(
    name="dividends",
    v1_path="/fins/dividend",
    v2_path="/fins/dividend",
    v1_key="dividend",
    partition_by="AnnouncementDate",
    key=("ReferenceNumber",),
    doc=(
        "Dividend notices (decided and forecast) per issue: amount per share, record date, ex-date, "
        "payable date. Each notice has its own ReferenceNumber; a revision (StatusCode 2) or a "
        "deletion (3) of a dividend is a new notice carrying the CAReferenceNumber of the dividend's "
        "first one. An undecided amount or payable date is '-' on the wire, null in the lake. "
        "AnnouncementTime (HH:MM) decides usability like statements' DisclosedTime."
    ),
    fields=(
        _f("AnnouncementDate", "PubDate", DATE, True),
        _f("AnnouncementTime", "PubTime", STR, True),
        _f("Code", "Code", STR, True),
        _f("ReferenceNumber", "RefNo", STR, True),
        _f("StatusCode", "StatCode", STR, True),
        _f("BoardMeetingDate", "BoardDate", DATE),
        _f("InterimFinalCode", "IFCode", STR, True),
        _f("ForecastResultCode", "FRCode", STR, True),
        _f("InterimFinalTerm", "IFTerm", STR),
        _f("GrossDividendRate", "DivRate", F64, undecided="-"),
        _f("RecordDate", "RecDate", DATE, True),
        _f("ExDate", "ExDate", DATE, True),
        _f("ActualRecordDate", "ActRecDate", DATE),
        _f("PayableDate", "PayDate", DATE, undecided="-"),
        _f("CAReferenceNumber", "CARefNo", STR, True),
        _f("DistributionAmount", "DistAmt", F64),
        _f("RetainedEarnings", "RetEarn", F64),
        _f("DeemedDividend", "DeemDiv", F64),
        _f("DeemedCapitalGains", "DeemCapGains", F64),
        _f("NetAssetDecreaseRatio", "NetAssetDecRatio", F64),
        _f("CommemorativeSpecialCode", "CommSpecCode", STR),
        _f("CommemorativeDividendRate", "CommDivRate", F64),
        _f("SpecialDividendRate", "SpecDivRate", F64),
    ),
)


def _sessions(*sessions: tuple[str, str]) -> tuple[Field, ...]:
    """OHLC fields of each (v1 session prefix, v2 prefix): ``WholeDayOpen``/``O``,
    ``NightSessionOpen``/``EO`` ..."""
    return tuple(
        _f(f"{v1}{part}", f"{v2}{part[0]}", F64)
        for v1, v2 in sessions
        for part in ("Open", "High", "Low", "Close")
    )


FUTURES = Dataset(
    name="futures",
    v1_path="/derivatives/futures",
    v2_path="/derivatives/bars/daily/futures",
    v1_key="futures",
    partition_by="Date",
    key=("Date", "Code"),
    code_is_issue=False,
    doc=(
        "Daily bars of index futures per contract: the whole day, the morning (M), night (E: the "
        "evening before Date, through 06:00) and day (A) sessions, volume, open interest, contract "
        "month, last trading day, SQ day, settlement price and the central contract month flag. "
        "Here TOPIX futures (the market's own index), quarterly contracts. Published after the day "
        "session (~18:00 JST)."
    ),
    fields=(
        _f("Date", "Date", DATE, True),
        _f("Code", "Code", STR, True),
        _f("DerivativesProductCategory", "ProdCat", STR, True),
        *_sessions(("WholeDay", ""), ("MorningSession", "M"), ("NightSession", "E"), ("DaySession", "A")),
        _f("Volume", "Vo", F64, True),
        _f("OpenInterest", "OI", F64, True),
        _f("TurnoverValue", "Va", F64),
        _f("ContractMonth", "CM", STR, True),
        _f("Volume(OnlyAuction)", "VoOA", F64),
        _f("EmergencyMarginTriggerDivision", "EmMrgnTrgDiv", STR),
        _f("LastTradingDay", "LTD", DATE, True),
        _f("SpecialQuotationDay", "SQD", DATE, True),
        _f("SettlementPrice", "Settle", F64, True),
        _f("CentralContractMonthFlag", "CCMFlag", STR),
    ),
)

INDEX_OPTION = Dataset(
    name="index_option",
    v1_path="/option/index_option",
    v2_path="/derivatives/bars/daily/options/225",
    v1_key="index_option",
    partition_by="Date",
    key=("Date", "Code"),
    code_is_issue=False,
    doc=(
        "Daily bars of Nikkei 225 index options per series (contract month, strike, put/call): "
        "sessions, volume, open interest, settlement and theoretical prices, the base volatility, "
        "the underlying price, the implied volatility and the interest rate (percent). Published "
        "after the day session (~18:00 JST)."
    ),
    fields=(
        _f("Date", "Date", DATE, True),
        _f("Code", "Code", STR, True),
        *_sessions(("WholeDay", ""), ("NightSession", "E"), ("DaySession", "A")),
        _f("Volume", "Vo", F64, True),
        _f("OpenInterest", "OI", F64, True),
        _f("TurnoverValue", "Va", F64),
        _f("ContractMonth", "CM", STR, True),
        _f("StrikePrice", "Strike", F64, True),
        _f("Volume(OnlyAuction)", "VoOA", F64),
        _f("EmergencyMarginTriggerDivision", "EmMrgnTrgDiv", STR),
        _f("PutCallDivision", "PCDiv", STR, True),
        _f("LastTradingDay", "LTD", DATE, True),
        _f("SpecialQuotationDay", "SQD", DATE, True),
        _f("SettlementPrice", "Settle", F64, True),
        _f("TheoreticalPrice", "Theo", F64),
        _f("BaseVolatility", "BaseVol", F64),
        _f("UnderlyingPrice", "UnderPx", F64, True),
        _f("ImpliedVolatility", "IV", F64, True),
        _f("InterestRate", "IR", F64),
    ),
)

#: daily_margin_interest's publish reasons (flags "0"/"1" inside one PublishReason object).
PUBLISH_REASONS = (
    "Restricted",
    "DailyPublication",
    "Monitoring",
    "RestrictedByJSF",
    "PrecautionByJSF",
    "UnclearOrSecOnAlert",
)

DAILY_MARGIN_INTEREST = Dataset(
    name="daily_margin_interest",
    v1_path="/markets/daily_margin_interest",
    v2_path="/markets/margin-alert",
    v1_key="daily_margin_interest",
    partition_by="PublishedDate",
    key=("PublishedDate", "Code", "ApplicationDate"),
    doc=(
        "Daily margin balances (shares) of the issues the TSE or JSF publishes daily (margin "
        "alerts): the balances of ApplicationDate, published on PublishedDate with the reasons of "
        "the publication. A revision is a new record with the same ApplicationDate and a later "
        "PublishedDate. The reasons come as one object of '0'/'1' flags (v1 PublishReason, v2 "
        "PubReason, keys PUBLISH_REASONS; v2's keys are assumed equal to v1's, not verified against "
        "the v2 spec), kept flat in the lake as Boolean PublishReason<key> columns."
    ),
    fields=(
        _f("PublishedDate", "PubDate", DATE, True),
        _f("Code", "Code", STR, True),
        _f("ApplicationDate", "AppDate", DATE, True),
        *(
            Field(f"PublishReason{k}", k, BOOL, v1=k, parent=("PublishReason", "PubReason"))
            for k in PUBLISH_REASONS
        ),
        _f("ShortMarginOutstanding", "ShrtOut", F64, True),
        _f("DailyChangeShortMarginOutstanding", "ShrtOutChg", F64),
        _f("ShortMarginOutstandingListedShareRatio", "ShrtOutRatio", F64),
        _f("LongMarginOutstanding", "LongOut", F64, True),
        _f("DailyChangeLongMarginOutstanding", "LongOutChg", F64),
        _f("LongMarginOutstandingListedShareRatio", "LongOutRatio", F64),
        _f("ShortLongRatio", "SLRatio", F64),
        _f("ShortNegotiableMarginOutstanding", "ShrtNegOut", F64),
        _f("DailyChangeShortNegotiableMarginOutstanding", "ShrtNegOutChg", F64),
        _f("ShortStandardizedMarginOutstanding", "ShrtStdOut", F64),
        _f("DailyChangeShortStandardizedMarginOutstanding", "ShrtStdOutChg", F64),
        _f("LongNegotiableMarginOutstanding", "LongNegOut", F64),
        _f("DailyChangeLongNegotiableMarginOutstanding", "LongNegOutChg", F64),
        _f("LongStandardizedMarginOutstanding", "LongStdOut", F64),
        _f("DailyChangeLongStandardizedMarginOutstanding", "LongStdOutChg", F64),
        _f("TSEMarginBorrowingAndLendingRegulationClassification", "TSEMrgnRegCls", STR),
    ),
)

SHORT_SELLING_POSITIONS = Dataset(
    name="short_selling_positions",
    v1_path="/markets/short_selling_positions",
    v2_path="/markets/short-sale-report",
    v1_key="short_selling_positions",
    partition_by="DisclosedDate",
    key=("DisclosedDate", "CalculatedDate", "Code", "ShortSellerName"),
    date_param=("disclosed_date", "disc_date"),
    doc=(
        "Reports of short positions of 0.5% of the shares outstanding or more (and the first one "
        "below it), per short seller and issue: the position calculated on CalculatedDate, "
        "disclosed on DisclosedDate (a few trading days later), with the previous report's ratio."
    ),
    fields=(
        _f("DisclosedDate", "DiscDate", DATE, True),
        _f("CalculatedDate", "CalcDate", DATE, True),
        _f("Code", "Code", STR, True),
        _f("ShortSellerName", "SSName", STR, True),
        _f("ShortSellerAddress", "SSAddr", STR),
        _f("DiscretionaryInvestmentContractorName", "DICName", STR),
        _f("DiscretionaryInvestmentContractorAddress", "DICAddr", STR),
        _f("InvestmentFundName", "FundName", STR),
        _f("ShortPositionsToSharesOutstandingRatio", "ShrtPosToSO", F64, True),
        _f("ShortPositionsInSharesNumber", "ShrtPosShares", F64),
        _f("ShortPositionsInTradingUnitsNumber", "ShrtPosUnits", F64),
        _f("CalculationInPreviousReportingDate", "PrevRptDate", DATE),
        _f("ShortPositionsInPreviousReportingRatio", "PrevRptRatio", F64),
        _f("Notes", "Notes", STR),
    ),
)

#: index_option PutCallDivision: 1 put, 2 call.
OPTION_PUT, OPTION_CALL = "1", "2"

#: dividends StatusCode: a new dividend, a revision of one, its deletion.
DIVIDEND_NEW, DIVIDEND_REVISED, DIVIDEND_DELETED = "1", "2", "3"
#: dividends InterimFinalCode (interim, final) and ForecastResultCode (decided, forecast).
DIVIDEND_INTERIM, DIVIDEND_FINAL = "1", "2"
DIVIDEND_DECIDED, DIVIDEND_FORECAST = "1", "2"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        LISTED_INFO,
        DAILY_QUOTES,
        STATEMENTS,
        TRADES_SPEC,
        TOPIX,
        INDICES,
        SHORT_SELLING,
        WEEKLY_MARGIN_INTEREST,
        EARNINGS_CALENDAR,
        DIVIDENDS,
        FUTURES,
        INDEX_OPTION,
        DAILY_MARGIN_INTEREST,
        SHORT_SELLING_POSITIONS,
        TRADING_CALENDAR,
    )
}

#: trades_spec Section values (the same strings in v1 and v2). The 2022-04-04 market
#: restructuring replaced TSE1st/TSE2nd/TSEMothers/TSEJASDAQ with TSEPrime/TSEStandard/TSEGrowth.
SECTIONS_BEFORE_2022 = ("TSE1st", "TSE2nd", "TSEMothers", "TSEJASDAQ", "TokyoNagoya")
SECTIONS_FROM_2022 = ("TSEPrime", "TSEStandard", "TSEGrowth", "TokyoNagoya")

#: listed_info MarketCode values (J-Quants spec "marketcode").
MARKET_CODES: dict[str, str] = {
    "0101": "東証一部",
    "0102": "東証二部",
    "0104": "マザーズ",
    "0105": "TOKYO PRO MARKET",
    "0106": "JASDAQ スタンダード",
    "0107": "JASDAQ グロース",
    "0109": "その他",
    "0111": "プライム",
    "0112": "スタンダード",
    "0113": "グロース",
}


#: Index code of each 33-sector index (J-Quants' index code list: 0040..0060, hexadecimal-like, in
#: Sector33Code order). Not the sector code itself: index 0050 is Transportation Equipment, sector
#: 0050 Fishery.
SECTOR_33_CODES: tuple[str, ...] = (
    "0050", "1050", "2050", "3050", "3100", "3150", "3200", "3250", "3300", "3350", "3400",
    "3450", "3500", "3550", "3600", "3650", "3700", "3750", "3800", "4050", "5050", "5100",
    "5150", "5200", "5250", "6050", "6100", "7050", "7100", "7150", "7200", "8050", "9050",
)  # fmt: skip
SECTOR_INDEX_CODES: dict[str, str] = {s33: f"{0x40 + k:04X}" for k, s33 in enumerate(SECTOR_33_CODES)}

#: earnings_calendar FiscalQuarter text for statements' TypeOfCurrentPeriod.
FISCAL_QUARTERS: dict[str, str] = {"1Q": "第１四半期", "2Q": "第２四半期", "3Q": "第３四半期", "FY": "通期"}


#: Datasets fetched as a whole snapshot: ``raw/<name>/date=D`` holds everything the API answered on
#: D, not the rows of D (the trading calendar: see gogooku3.exchange_calendar).
SNAPSHOT_DATASETS = ("trading_calendar",)
#: Every dataset the fetch writes: the CLI's ``--endpoint`` values, the calendar first.
ENDPOINT_NAMES = (*SNAPSHOT_DATASETS, *DATASET_NAMES)


def get_dataset(name: str) -> Dataset:
    """Look a dataset up by canonical name, naming the valid ones on a miss."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown endpoint {name!r}: expected one of {', '.join(ENDPOINT_NAMES)}") from None
