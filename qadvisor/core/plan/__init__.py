"""Planning: the planner's formats, slices of a planned model and projections from them."""
