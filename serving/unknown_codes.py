"""Request values a model has never seen: named in the answer, counted and logged, or refused by configuration.

A carrier, origin or destination outside the model's training vocabulary is encoded as
"unknown" and still gets a probability; a tail number outside the snapshot's planes gets
the missing-plane features. Both are guesses the client should know about, so each answer
lists the fields it guessed on (`unknown_fields`) instead of passing a silent 200.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ml.features.flight_features import CATEGORICAL_FEATURES
from ml.online.features import Schedule
from ml.online.snapshot import OnlineSnapshot
from ml.training.preprocess import Preprocessor

UnknownPolicy = Literal["flag", "refuse"]
UNKNOWN_POLICIES: tuple[UnknownPolicy, ...] = ("flag", "refuse")
PLANE_FIELD = "tailnum"


@dataclass(frozen=True)
class Vocabulary:
    """What a served model (its categories) and snapshot (its planes) know."""

    categories: dict[str, frozenset[str]]
    planes: frozenset[str]

    @classmethod
    def of(cls, preprocessor: Preprocessor, snapshot: OnlineSnapshot) -> Vocabulary:
        categories = {c: frozenset(preprocessor.vocabularies[c]) for c in CATEGORICAL_FEATURES}
        planes = (
            frozenset(snapshot.planes["tailnum"].drop_nulls().to_list())
            if "tailnum" in snapshot.planes.columns
            else frozenset()
        )
        return cls(categories, planes)

    def unknown(self, schedule: Schedule) -> tuple[str, ...]:
        """The fields of one flight the model guesses on, in request order (empty for a known flight)."""
        fields = tuple(c for c in CATEGORICAL_FEATURES if getattr(schedule, c) not in self.categories[c])
        if schedule.tailnum is not None and schedule.tailnum not in self.planes:
            return (*fields, PLANE_FIELD)
        return fields
