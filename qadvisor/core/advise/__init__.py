"""Advising: the recommendation, the target's advice, comparisons, published evidence."""
