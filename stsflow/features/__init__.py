"""SAE features of the queries: which queries and tokens are used (``queries``), the extraction
pass (``extract``), the Parquet shards it writes (``shards``), and the per-dimension statistics
every score is computed from (``stats``)."""
