"""Readers and the command line around the aggregators: crowd tables (``crowd``), WRENCH folders
(``wrench``) and ``w2s-aggregate`` (``cli``). The aggregators themselves never import these."""
