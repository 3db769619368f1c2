"""A J-Quants API emulator (v1 and v2) serving :mod:`gogooku3.market`'s synthetic market."""

from gogooku3.emulator.config import FAULT_KINDS, PLAN_LIMITS, EmulatorConfig
from gogooku3.emulator.server import create_app, serve_forever

__all__ = ["FAULT_KINDS", "PLAN_LIMITS", "EmulatorConfig", "create_app", "serve_forever"]
