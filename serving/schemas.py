"""The predict request, its validation, and error answers that name the offending field.

Validation is strict (JSON types as declared: a distance of "719" or 719.5 is refused,
not converted), since a client sending the wrong type has a bug worth hearing about.
"""

from __future__ import annotations

import datetime as dt
import functools

import polars as pl
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, create_model

from ml.online.features import REQUEST_SCHEMA, Schedule, local_day

MAX_ERRORS = 20


class Flight(BaseModel):
    """A scheduled flight as a client knows it before departure."""

    model_config = ConfigDict(extra="forbid")

    carrier: str = Field(pattern=r"^[A-Z0-9]{2}$", description="IATA carrier code, e.g. UA")
    origin: str = Field(pattern=r"^[A-Z]{3}$", description="FAA code of the departure airport")
    dest: str = Field(pattern=r"^[A-Z]{3}$", description="FAA code of the arrival airport")
    scheduled_departure: AwareDatetime = Field(description="ISO 8601 with a UTC offset")
    tailnum: str | None = Field(default=None, pattern=r"^[A-Z0-9]{1,10}$")
    distance: int = Field(ge=1, le=10_000, description="miles")
    flight: int | None = Field(
        default=None, ge=1, le=9999, description="flight number: not a feature; logged to match outcomes"
    )


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flights: list[Flight] = Field(min_length=1)


@functools.cache
def request_model(max_batch: int) -> type[PredictRequest]:
    """The request type with the configured batch limit, built once per limit."""
    return create_model(
        "PredictRequest",
        __base__=PredictRequest,
        flights=(list[Flight], Field(min_length=1, max_length=max_batch)),
    )


def parse(body: bytes, max_batch: int) -> PredictRequest:
    return request_model(max_batch).model_validate_json(body, strict=True)


def field_name(location: tuple[int | str, ...]) -> str:
    """`("flights", 3, "distance")` -> `flights[3].distance`."""
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def errors_of(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": field_name(tuple(e["loc"])), "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False)[:MAX_ERRORS]
    ]


def is_batch_too_large(exc: ValidationError) -> bool:
    return any(
        e["type"] == "too_long" and tuple(e["loc"]) == ("flights",) for e in exc.errors(include_url=False)
    )


def schedules(request: PredictRequest) -> list[Schedule]:
    """The request's flights as `ml.online.features` rows, departures in UTC."""
    return [
        Schedule(f.carrier, f.origin, f.dest, f.scheduled_departure.astimezone(dt.UTC), f.tailnum, f.distance)
        for f in request.flights
    ]


def outside_range(flights: list[Schedule], first: dt.date, last: dt.date) -> list[dict[str, str]]:
    """Errors for flights the snapshot cannot answer for, named by field: days first, then airports."""
    errors = []
    for i, flight in enumerate(flights):
        day = local_day(flight.sched_dep_utc)
        if not first <= day <= last:
            errors.append(
                {
                    "field": f"flights[{i}].scheduled_departure",
                    "message": f"local departure day {day} is outside the served days {first}..{last}",
                    "type": "outside_served_days",
                }
            )
    errors += [
        {"field": f"flights[{i}].dest", "message": "dest equals origin", "type": "same_airports"}
        for i, flight in enumerate(flights)
        if flight.origin == flight.dest
    ][:MAX_ERRORS]
    return errors[:MAX_ERRORS]


def flight_numbers(request: PredictRequest) -> list[int | None]:
    return [f.flight for f in request.flights]


def request_frame(flights: list[Schedule]) -> pl.DataFrame:
    """The flights as the `REQUEST_SCHEMA` frame the frame path and the prediction log read."""
    return pl.DataFrame(flights, schema=REQUEST_SCHEMA, orient="row")
