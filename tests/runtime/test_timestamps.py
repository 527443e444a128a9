"""The orchestrator's own datetime -> Timestamp conversion gives exactly what protobuf's FromDatetime gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from ai_agents.orchestrator.records_to_proto import _ts
from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

# Timestamp's range is years 1 to 9999; PostgreSQL's timestamptz holds the same instants at microseconds.
_INSTANTS = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.one_of(
        st.none(),
        st.just(UTC),
        st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60)),
    ),
)


def _upstream(value: datetime) -> timestamp_pb2.Timestamp:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    return expected


@given(_INSTANTS)
def test_every_instant_converts_as_from_datetime_does(value: datetime) -> None:
    assert _ts(value) == _upstream(value)


def test_before_the_epoch_nanos_stay_positive() -> None:
    value = datetime(1969, 12, 31, 23, 59, 59, 250_000, tzinfo=UTC)
    converted = _ts(value)
    assert converted is not None
    assert (converted.seconds, converted.nanos) == (-1, 250_000_000)
    assert converted == _upstream(value)


def test_none_stays_unset() -> None:
    assert _ts(None) is None
