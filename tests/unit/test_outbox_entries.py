"""A round's outputs for one partition travel through Redis as one outbox entry."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from msgstate.streams.rounds.outbox import EVENT, REJECTION, OutRecord, pack_outbox, unpack_outbox

records = st.lists(st.builds(OutRecord, st.sampled_from([EVENT, REJECTION]), st.binary(max_size=40),
                             st.binary(max_size=200)), min_size=1, max_size=20)


@given(records)
def test_an_entry_gives_back_its_records_in_order(outputs: list[OutRecord]) -> None:
    assert unpack_outbox(pack_outbox(outputs)) == outputs


@given(records)
def test_an_entry_of_one_record_in_the_earlier_format_is_still_read(outputs: list[OutRecord]) -> None:
    for output in outputs:
        assert unpack_outbox(output.encode()) == [output]
