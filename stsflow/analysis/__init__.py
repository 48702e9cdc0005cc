"""Statistics of the prediction against what happened: observed accuracy changes with their
uncertainty (``observed``), resampling estimators (``resampling``), and the correlation tables
with pre-declared primary rows and Holm-adjusted families (``correlation``). Torch-free."""
