"""Factorization machines with the interface of SageMaker's built-in `factorization-machines` algorithm."""
