"""Refinement: the strong model relabelling the weakly labelled examples in context (not a teacher: its
``fit`` takes the weak labels it is shown, and its labels join the run as one more teacher's)."""
