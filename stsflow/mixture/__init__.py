"""The STS-guided data mixture (docs/method.md#data-mixture): replay answers of the base model to the domains' pool
items (``replay``), a budget of them split between domains by a strategy (``allocate``) and
drawn for a fine-tuning run, whose SFT set they join (``records``)."""
