"""The STS-guided data mixture (SPEC §7): replay answers of the base model to the domains' pool
items (``replay``), a budget of them split between domains by a strategy (``allocate``) and
added to the SFT set of a fine-tuning run."""
