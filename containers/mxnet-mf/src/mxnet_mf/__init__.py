"""MXNet matrix-factorization recommender: linear MF, deep MF and a one-hidden-layer MLP on rating data."""
