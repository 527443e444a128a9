"""List pages bounded in rows and in bytes, cut inside PostgreSQL so rows past the budget are never fetched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def byte_bounded_page(page_sql: str, *, order_by: str, row_bytes: str, budget_param: str) -> str:
    """Wrap `page_sql` (its rows ordered by `order_by`, LIMIT page_size + 1) so that only the rows whose running
    size (`row_bytes`, an SQL expression) stays within `budget_param` come back, the first row always.
    Every row returned carries `window_rows`, the number of rows `page_sql` found (see `has_more`)."""
    return f"""
        WITH page AS ({page_sql}), sized AS (
            SELECT page.*,
                sum({row_bytes}) OVER w AS bytes_through,
                row_number() OVER w AS row_in_page,
                count(*) OVER () AS window_rows
            FROM page
            WINDOW w AS (ORDER BY {order_by} ROWS UNBOUNDED PRECEDING)
        )
        SELECT * FROM sized WHERE row_in_page = 1 OR bytes_through <= {budget_param} ORDER BY row_in_page
    """


def has_more(rows: Sequence[Any], returned: int) -> bool:
    """More rows follow if the window held more than the page returned: one past page_size, or cut by the budget."""
    return bool(rows) and rows[0]["window_rows"] > returned
