"""Built-in default data: deterministic generators written for this project.

Two kinds of corpora, in the two record schemas of ``stsflow.data.corpora``:

* ``sft_math``: arithmetic word problems with worked, numbered solutions (LIMO schema). This is the
  fine-tuning set whose effect on every domain the workflow predicts and measures.
* ``sft_algebra`` and ``sft_geography``: two more candidate SFT sets of other characters (symbolic
  algebra and sequences; geography recall), in the same schema, for the cross-SFT matrix
  (``SFT_SETS`` lists every built-in SFT set by name).
* ``domain_items(name)``: multiple-choice items (MMLU-Pro schema) for ``DOMAINS``. Some domains
  need the same kind of computation as the SFT set (arithmetic, business, physics, chemistry,
  engineering), others only recalled knowledge (biology, history, law, philosophy, psychology), so
  the default run has both near and far domains.

Everything is drawn from ``random.Random`` seeded explicitly, so the same seed gives the same
records (and, through ``write_default_data``, the same bytes). All numbers in worked solutions are
exact: every computation is written as ``a op b = c`` with bare numbers, so the tests can re-evaluate
each equation, and the last equation of a solution always yields its answer. The texts are short and
plainly worded, because the model reading them is small (SmolLM2-135M-Instruct).

Modules: ``common`` (domain lists, shared helpers), ``math_sft``, ``algebra_sft`` and ``recall_sft``
(the SFT sets), ``numeric`` (a package, one module per domain) and ``knowledge`` (the two domain
families), ``items`` (MMLU-Pro records), ``files`` (JSON lines).
"""

from stsflow.data.builtin.common import DOMAINS, KNOWLEDGE_DOMAINS, NUMERIC_DOMAINS
from stsflow.data.builtin.files import write_default_data
from stsflow.data.builtin.items import domain_items, pool_items
from stsflow.data.builtin.algebra_sft import sft_algebra
from stsflow.data.builtin.math_sft import sft_math
from stsflow.data.builtin.recall_sft import sft_geography

# every built-in SFT set, by the name a config gives (sft.<name>.source.builtin.name)
SFT_SETS = {"sft_math": sft_math, "sft_algebra": sft_algebra, "sft_geography": sft_geography}

__all__ = ["DOMAINS", "NUMERIC_DOMAINS", "KNOWLEDGE_DOMAINS", "SFT_SETS", "sft_math", "sft_algebra",
           "sft_geography", "domain_items", "pool_items", "write_default_data"]
