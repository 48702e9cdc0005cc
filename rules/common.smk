# The workflow object and what only Snakemake can express. Everything else the rules need
# (paths, input bundles, config slices, costs, runs) is Python in stsflow/workflow/, importable
# and tested without Snakemake.

from stsflow.workflow import Workflow, schedule
from stsflow.workflow.mixture import checkpoint_lookup

WF = Workflow(config)
CONFIG = WF.config
L = WF.layout  # every artifact's path (stsflow.workflow.layout)
INPUTS = WF.inputs  # input functions (stsflow.workflow.inputs, .bundles)
PARAMS = WF.params  # each job's slice of the config (stsflow.workflow.params)
COSTS = WF.costs  # threads, GPU units, memory and runtime of model jobs (stsflow.workflow.costs)
PRIORITY = schedule  # the STS table's chain first (stsflow.workflow.schedule)
# which data-mixture runs train is learnt from the allocation checkpoint (rules/validate.smk)
WF.mixture.lookup = checkpoint_lookup(lambda: checkpoints.allocation)


wildcard_constraints:
    model=WF.patterns["name"],
    sft=WF.patterns["sft"],
    domain=WF.patterns["name"],
    corpus=WF.patterns["name"],
    layer=r"\d+",
    sae=WF.patterns["name"],
    seed=r"\d+",
    n=r"\d+",
    kind="sft|domain",
    mode=WF.patterns["mode"],
    method=WF.patterns["method"],
    shift=WF.patterns["shift"],
