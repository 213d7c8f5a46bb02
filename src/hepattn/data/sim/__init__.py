"""Full event simulation: Pythia 8 + ACTS Fatras on the generic detector, written as TrackML CSV."""
