"""The report of one (model, SFT set): the primary result first, correlations with intervals,
scatter plots per seed, SAE quality and coverage tables, as Markdown and self-contained HTML."""
