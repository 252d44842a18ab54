"""Budgets that never overshoot: worst-case holds under a row lock, settled with the ledger row.

Modules: `spec` (BudgetSpec, periods, scopes), `store` (portable SQL on the
ledger's database), `manager` (`Budgets`: admit, settle, release, status),
`alerts` (callbacks and webhook).
"""

from .alerts import Alerts
from .manager import Admission, Budgets, Hold, Worst
from .spec import BudgetSpec, parse_budgets

__all__ = ["Admission", "Alerts", "BudgetSpec", "Budgets", "Hold", "Worst", "parse_budgets"]
