"""1-bit building blocks, the DARTS search space, supernets, search methods and final networks."""
