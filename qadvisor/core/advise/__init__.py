"""Advising: the recommendation, the target advice, comparisons, published evidence."""
