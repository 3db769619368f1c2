"""Reference data for the synthetic market: sector tables, market segments, price limits.

The 33/17 sector codes and names are copied from J-Quants' published tables (the same data the
official ``jquants-api-client`` ships in ``jquantsapi.constants``), so the emulator serves the
codes a real client expects.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

#: (Sector33Code, Japanese name, English name, Sector17Code). "9999 Other" is left out: every
#: synthetic company belongs to one of the 33 real sectors.
SECTOR_33: tuple[tuple[str, str, str, str], ...] = (
    ("0050", "水産・農林業", "Fishery, Agriculture & Forestry", "1"),
    ("1050", "鉱業", "Mining", "2"),
    ("2050", "建設業", "Construction", "3"),
    ("3050", "食料品", "Foods", "1"),
    ("3100", "繊維製品", "Textiles & Apparels", "4"),
    ("3150", "パルプ・紙", "Pulp & Paper", "4"),
    ("3200", "化学", "Chemicals", "4"),
    ("3250", "医薬品", "Pharmaceutical", "5"),
    ("3300", "石油･石炭製品", "Oil & Coal Products", "2"),
    ("3350", "ゴム製品", "Rubber Products", "6"),
    ("3400", "ガラス･土石製品", "Glass & Ceramics Products", "3"),
    ("3450", "鉄鋼", "Iron & Steel", "7"),
    ("3500", "非鉄金属", "Nonferrous Metals", "7"),
    ("3550", "金属製品", "Metal Products", "3"),
    ("3600", "機械", "Machinery", "8"),
    ("3650", "電気機器", "Electric Appliances", "9"),
    ("3700", "輸送用機器", "Transportation Equipment", "6"),
    ("3750", "精密機器", "Precision Instruments", "9"),
    ("3800", "その他製品", "Other Products", "10"),
    ("4050", "電気･ガス業", "Electric Power & Gas", "11"),
    ("5050", "陸運業", "Land Transportation", "12"),
    ("5100", "海運業", "Marine Transportation", "12"),
    ("5150", "空運業", "Air Transportation", "12"),
    ("5200", "倉庫･運輸関連業", "Warehousing & Harbor Transportation Services", "12"),
    ("5250", "情報･通信業", "Information & Communication", "10"),
    ("6050", "卸売業", "Wholesale Trade", "13"),
    ("6100", "小売業", "Retail Trade", "14"),
    ("7050", "銀行業", "Banks", "15"),
    ("7100", "証券､商品先物取引業", "Securities & Commodity Futures", "16"),
    ("7150", "保険業", "Insurance", "16"),
    ("7200", "その他金融業", "Other Financing Business", "16"),
    ("8050", "不動産業", "Real Estate", "17"),
    ("9050", "サービス業", "Services", "10"),
)

#: Sector17Code -> Japanese name.
SECTOR_17_NAMES: dict[str, str] = {
    "1": "食品",
    "2": "エネルギー資源",
    "3": "建設・資材",
    "4": "素材・化学",
    "5": "医薬品",
    "6": "自動車・輸送機",
    "7": "鉄鋼・非鉄",
    "8": "機械",
    "9": "電機・精密",
    "10": "情報通信・サービスその他",
    "11": "電気・ガス",
    "12": "運輸・物流",
    "13": "商社・卸売",
    "14": "小売",
    "15": "銀行",
    "16": "金融（除く銀行）",
    "17": "不動産",
}

#: The TSE market restructuring: from this date the old segments became Prime/Standard/Growth.
RESTRUCTURE_DATE = dt.date(2022, 4, 4)

#: MarketCode values used before / from the restructuring (subset of the J-Quants table).
MARKETS_BEFORE: tuple[str, ...] = ("0101", "0102", "0104", "0106", "0107")
MARKETS_FROM: tuple[str, ...] = ("0111", "0112", "0113")

#: trades_spec Section of a stock's market segment.
SECTION_OF_MARKET: dict[str, str] = {
    "0101": "TSE1st",
    "0102": "TSE2nd",
    "0104": "TSEMothers",
    "0106": "TSEJASDAQ",
    "0107": "TSEJASDAQ",
    "0111": "TSEPrime",
    "0112": "TSEStandard",
    "0113": "TSEGrowth",
}

MARGIN_CODE_NAMES: dict[str, str] = {"1": "信用", "2": "貸借", "3": "その他"}

SCALE_CATEGORIES: tuple[str, ...] = (
    "TOPIX Core30",
    "TOPIX Large70",
    "TOPIX Mid400",
    "TOPIX Small 1",
    "TOPIX Small 2",
    "-",
)

# TSE daily price limits (yen) by base price: a base price below _LIMIT_THRESHOLDS[k] (and at or
# above the previous threshold) may move at most _LIMIT_WIDTHS[k] yen either way.
_LIMIT_THRESHOLDS = np.array(
    [100, 200, 500, 700, 1_000, 1_500, 2_000, 3_000, 5_000, 7_000, 10_000, 15_000, 20_000, 30_000,
     50_000, 70_000, 100_000, 150_000, 200_000, 300_000, 500_000, 700_000, 1_000_000],
    dtype=np.float64,
)  # fmt: skip
_LIMIT_WIDTHS = np.array(
    [30, 50, 80, 100, 150, 300, 400, 500, 700, 1_000, 1_500, 3_000, 4_000, 5_000, 7_000, 10_000,
     15_000, 30_000, 40_000, 50_000, 70_000, 100_000, 150_000, 300_000],
    dtype=np.float64,
)  # fmt: skip


def price_limit_width(base: np.ndarray) -> np.ndarray:
    """The TSE daily limit width in yen for each base price (the previous close, split-adjusted)."""
    return _LIMIT_WIDTHS[np.searchsorted(_LIMIT_THRESHOLDS, base, side="right")]
