"""TrackML tracking: features and prepared events, two-stage reconstruction, evaluation, demo."""
