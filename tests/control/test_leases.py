"""LeaseTable: grant, renew, expire, revoke, told the time."""

from __future__ import annotations

import math

import pytest

from seawall.control.leases import LeaseTable


def test_a_lease_lives_until_its_deadline() -> None:
    table = LeaseTable()
    table.grant(1, ttl=10.0, now=100.0)

    assert 1 in table
    assert len(table) == 1
    assert table.alive(1, now=109.99)
    assert not table.alive(1, now=110.0)  # alive while now < deadline
    assert table.ttl(1) == 10.0
    assert table.next_deadline() == 110.0


def test_expire_takes_exactly_the_due_leases_in_deadline_order() -> None:
    table = LeaseTable()
    table.grant(1, ttl=3.0, now=0.0)
    table.grant(2, ttl=1.0, now=0.0)
    table.grant(3, ttl=5.0, now=0.0)

    assert table.expire(now=0.5) == []
    assert table.expire(now=3.0) == [2, 1]
    assert table.leases() == [3]
    assert table.expire(now=3.0) == []
    assert table.expire(now=100.0) == [3]
    assert len(table) == 0
    assert table.next_deadline() is None


def test_renew_restarts_the_full_ttl_from_now() -> None:
    table = LeaseTable()
    table.grant(1, ttl=10.0, now=0.0)

    assert table.renew(1, now=9.0)
    assert table.expire(now=18.9) == []  # the first deadline (10) is stale now
    assert table.next_deadline() == 19.0
    assert table.expire(now=19.0) == [1]


def test_an_expired_or_unknown_lease_cannot_be_renewed() -> None:
    table = LeaseTable()
    table.grant(1, ttl=10.0, now=0.0)

    assert not table.renew(1, now=10.0)
    assert 1 in table  # still there until expire() takes it, so its holdings go with it
    assert table.expire(now=10.0) == [1]
    assert not table.renew(1, now=10.0)
    assert not table.renew(2, now=0.0)


def test_revoke_forgets_and_leaves_no_due_entry() -> None:
    table = LeaseTable()
    table.grant(1, ttl=1.0, now=0.0)
    table.grant(2, ttl=2.0, now=0.0)

    assert table.revoke(1)
    assert not table.revoke(1)
    assert not table.alive(1, now=0.0)
    assert table.ttl(1) is None
    assert table.next_deadline() == 2.0
    assert table.expire(now=5.0) == [2]


def test_granting_again_replaces_ttl_and_deadline() -> None:
    """How a restarted store gives every stored lease a full TTL."""
    table = LeaseTable()
    table.grant(1, ttl=10.0, now=0.0)

    table.grant(1, ttl=4.0, now=8.0)

    assert table.ttl(1) == 4.0
    assert table.expire(now=11.9) == []
    assert table.expire(now=12.0) == [1]


def test_the_stale_entries_of_many_renewals_never_expire_a_live_lease() -> None:
    table = LeaseTable()
    table.grant(1, ttl=1.0, now=0.0)
    for step in range(1, 1000):
        assert table.renew(1, now=step * 0.5)  # the last one at 499.5

    assert table.expire(now=500.0) == []
    assert table.next_deadline() == 500.5
    assert table.expire(now=500.5) == [1]
    assert table.next_deadline() is None


@pytest.mark.parametrize("ttl", [0.0, -1.0, math.inf, math.nan])
def test_ttl_must_be_finite_and_positive(ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        LeaseTable().grant(1, ttl=ttl, now=0.0)
