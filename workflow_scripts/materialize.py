"""Rules materialize_sft / materialize_domain: a corpus as normalised Parquet records."""
from stsflow.config.settings import CorpusSettings
from stsflow.jobs import prepare
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
if snakemake.rule == "materialize_sft":
    corpus = CorpusSettings.from_config(snakemake.params.spec, f"sft.{snakemake.wildcards.corpus}")
    prepare.materialize_sft(corpus, snakemake.output[0])
else:
    corpus = CorpusSettings.from_config(snakemake.params.spec,
                                        f"domains.{snakemake.wildcards.corpus}")
    prepare.materialize_domain(corpus, snakemake.output.test, snakemake.output.demos)
