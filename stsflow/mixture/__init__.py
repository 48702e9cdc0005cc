"""The STS-guided data mixture (SPEC §7): replay answers of the base model to the domains' pool
items (``replay``), a budget of them split between domains by a strategy (``allocate``) and
drawn for a fine-tuning run, whose SFT set they join (``records``)."""
