"""Language models: preparing and loading them (``load``), reading the residual stream after a
block (``tap``), padding a batch (``batching``) and reusing a shared prefix's key/value cache
(``cache``)."""
