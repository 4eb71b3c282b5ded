"""A tiny model family for testing the contract runtime: ridge regression in numpy."""
