"""Text: MMLU-Pro and LIMO prompts (``prompts``), token segments of a chat turn (``segments``),
and the demonstrations placed before the queries (``demos``)."""
