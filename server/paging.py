"""A page of a list: its rows, the total count and which page it is."""

from __future__ import annotations

from dataclasses import dataclass

PAGE_SIZE = 50


@dataclass
class Listing:
    rows: list[dict]
    total: int
    page: int
    page_size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))
