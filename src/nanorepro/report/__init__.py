"""Results store (one JSON per experiment, profile and seed) and the rendered report."""
