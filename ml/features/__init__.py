"""Point-in-time flight features, computed from the bronze tables."""
