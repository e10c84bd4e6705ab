"""One run over the nodes of a Ray cluster."""
