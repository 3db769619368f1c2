"""Sizes and settings of ATFT-GAT-FAN: one frozen dataclass, saved (as JSON) with every trained model
so that the network can be rebuilt exactly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

SIZES = ("tiny", "small", "base", "large")

#: How the variable selection network embeds each variable (see ``layers.VariableSelectionNetwork``).
#: Kept here, free of torch, so that the CLI can list choices without importing it.
VAR_EMBEDDINGS = ("grn", "linear")

#: What each size changes from the dataclass defaults. ``tiny`` trains in seconds per epoch on two
#: CPU cores (CI: ~300 codes x 250 days x 140 features); ``base`` is the production default;
#: ``large`` wants a GPU.
_SIZE_OVERRIDES: dict[str, dict[str, int | str]] = {
    "tiny": {
        "hidden": 16,
        "var_hidden": 4,
        "attn_heads": 2,
        "gat_layers": 1,
        "gat_heads": 1,
        "var_embedding": "linear",
    },
    "small": {"hidden": 32, "var_hidden": 8},
    "base": {"hidden": 64, "var_hidden": 16},
    "large": {"hidden": 256, "var_hidden": 32, "attn_heads": 8},
}

#: Fields that are tuples in the dataclass and lists once through JSON.
_TUPLE_FIELDS = ("horizons", "quantiles", "fan_windows")


@dataclass(frozen=True)
class ModelConfig:
    """Everything :class:`~gogooku3.model.atft.ATFTGATFAN` needs to build itself; validated on creation."""

    n_features: int
    horizons: tuple[int, ...] = (1, 5, 10, 20)
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    seq_len: int = 20
    hidden: int = 64
    var_hidden: int = 16  # per-variable embedding width inside the variable selection network
    lstm_layers: int = 1
    attn_heads: int = 4
    gat_layers: int = 2
    gat_heads: int = 2
    edge_dim: int = 2  # edge attributes: (correlation, same_sector)
    fan_windows: tuple[int, ...] = (5, 10, 20)
    san_slices: int = 3
    dropout: float = 0.1
    #: How the variable selection embeds each variable: its own GRN (TFT) or its own linear map
    #: (several times cheaper on a CPU; the ``tiny`` size's choice).
    var_embedding: str = "grn"
    #: A linear path from the last day's inputs (values and missing flags) straight into every
    #: horizon's forecast, beside the deep path (wide & deep): a cross-sectional return predictor
    #: that is close to linear in a few features is one matrix product away instead of having to
    #: pass the variable selection's softmax, the LSTM and two LayerNorms. Configs saved before this
    #: field existed rebuild without it (:meth:`from_dict`).
    wide: bool = True
    size: str = "base"

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"unknown model size {self.size!r}: choose one of {', '.join(SIZES)}")
        counts = ("n_features", "seq_len", "hidden", "var_hidden", "lstm_layers", "attn_heads")
        for name in (*counts, "gat_layers", "gat_heads", "edge_dim", "san_slices"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden % self.attn_heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by attn_heads {self.attn_heads}")
        if self.hidden % self.gat_heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by gat_heads {self.gat_heads}")
        if not self.horizons or min(self.horizons) < 1 or len(set(self.horizons)) != len(self.horizons):
            raise ValueError(f"horizons {self.horizons}: expected unique positive trading-day counts")
        qs = self.quantiles
        if not qs or not all(0 < q < 1 for q in qs) or any(a >= b for a, b in zip(qs, qs[1:], strict=False)):
            raise ValueError(f"quantiles {qs}: expected strictly ascending values strictly inside (0, 1)")
        if not self.fan_windows or min(self.fan_windows) < 2:
            raise ValueError(f"fan_windows {self.fan_windows}: expected window lengths >= 2")
        if self.san_slices > self.seq_len:
            raise ValueError(f"san_slices {self.san_slices} exceeds seq_len {self.seq_len}")
        if self.var_embedding not in VAR_EMBEDDINGS:
            raise ValueError(
                f"unknown var_embedding {self.var_embedding!r}: choose one of {', '.join(VAR_EMBEDDINGS)}"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def for_size(
        cls, size: str, n_features: int, horizons: tuple[int, ...] = (1, 5, 10, 20), **overrides: Any
    ) -> ModelConfig:
        """The named size's settings for ``n_features`` inputs and ``horizons``; ``overrides`` win."""
        if size not in _SIZE_OVERRIDES:
            raise ValueError(f"unknown model size {size!r}: choose one of {', '.join(SIZES)}")
        settings = {**_SIZE_OVERRIDES[size], **overrides}
        return replace(cls(n_features=n_features, horizons=tuple(horizons)), size=size, **settings)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists in JSON; :meth:`from_dict` restores them)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`, also after a JSON round trip; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {', '.join(unknown)}")
        d = {"wide": False, **d}  # saved before the wide path existed: its weights have none
        return cls(**{k: tuple(v) if k in _TUPLE_FIELDS else v for k, v in d.items()})
