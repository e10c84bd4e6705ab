"""Planning: the planner's formats, slices of a target and projections from them."""
