"""The decision log: every scored row with its model version, inputs and outputs (README.md)."""

from serving.decisions.log import CHALLENGER_ROLE, CHAMPION_ROLE, DecisionLog, DecisionMetrics
from serving.decisions.settings import DecisionSettings, InputMode, load_decision_settings
from serving.decisions.stores import Decision, StoreError, open_store

__all__ = [
    "CHALLENGER_ROLE",
    "CHAMPION_ROLE",
    "Decision",
    "DecisionLog",
    "DecisionMetrics",
    "DecisionSettings",
    "InputMode",
    "StoreError",
    "load_decision_settings",
    "open_store",
]
