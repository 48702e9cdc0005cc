"""Files: atomic writes of files and whole directories, Parquet with metadata, hashes and package
versions (``files``), and the run manifest that lets someone else verify the results
(``manifest``)."""
