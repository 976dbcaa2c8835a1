"""What only the SQLite outbox does: one delivering process per file."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import DeliveryLocked

from tests.delivery.test_outbox import request
from tests.support.delivery import open_outbox


def test_claim_delivery_frees_stale_leases_and_is_exclusive(tmp_path: Path) -> None:
    first = open_outbox(tmp_path / "o.sqlite3")
    first.enqueue("web", [request(1)])
    first.lease({}, 4, 3600)
    assert first.claim_delivery() == 1
    second = open_outbox(tmp_path / "o.sqlite3")
    with pytest.raises(DeliveryLocked):
        second.claim_delivery()
    first.close()
    assert second.claim_delivery() == 0
