"""`msgstate tail` drops repeated events and rejections by their identity, within a window."""

from __future__ import annotations

from msgstate.workers.cli.tail import Repeats


def rejection(offset: int | None, change_index: int | None = 0) -> dict[str, object]:
    return {"reason": "fww_conflict", "partition": 2, "offset": offset, "change_index": change_index}


def test_a_rejection_repeats_only_with_the_same_partition_offset_and_change() -> None:
    repeats = Repeats()
    assert not repeats.seen("reject", rejection(5))
    assert repeats.seen("reject", {**rejection(5), "detail": "as produced again"})
    assert not repeats.seen("reject", rejection(5, change_index=1))
    assert not repeats.seen("reject", rejection(5, change_index=None))
    assert repeats.seen("reject", rejection(5, change_index=None))
    assert not repeats.seen("reject", rejection(6))


def test_an_event_repeats_by_its_id_and_unnamed_records_are_all_kept() -> None:
    repeats = Repeats()
    assert not repeats.seen("change", {"event_id": "m/r1/pick"})
    assert repeats.seen("change", {"event_id": "m/r1/pick"})
    assert not repeats.seen("reject", {"event_id": "m/r1/pick", "partition": 0, "offset": 1,
                                       "change_index": None})
    for _ in range(2):
        assert not repeats.seen("reject", rejection(None))
        assert not repeats.seen("change", {"message_id": "m"})


def test_only_the_latest_identities_are_remembered() -> None:
    repeats = Repeats(size=2)
    for offset in (1, 2, 3):
        assert not repeats.seen("reject", rejection(offset))
    assert repeats.seen("reject", rejection(3))
    assert not repeats.seen("reject", rejection(1))  # forgotten: printed again
