"""Rule materialize_pool: a domain's pool split as normalised Parquet records, refused where it
shares a question with the domain's test source or demonstrations."""
from stsflow.config.settings import CorpusSettings
from stsflow.jobs import prepare
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
where = f"domains.{snakemake.wildcards.corpus}.pool"
corpus = CorpusSettings.from_config(snakemake.params.spec, where)
prepare.materialize_pool(corpus, snakemake.params.against, snakemake.output[0], where)
