"""Landing files into rows: parse against the contracts, validate, quarantine, watch, replay."""
