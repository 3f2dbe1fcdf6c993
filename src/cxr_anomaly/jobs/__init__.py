"""The only layer that composes the others: train, refit, evaluate, benchmark, predict, export."""
