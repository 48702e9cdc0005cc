"""Checks of what the analyses declare against what the run computes: the data mixture's site
and strategies (``mixture:``), the report's pre-declared primary analysis (``report.primary``)
and the cross-SFT one (``report.matrix``). Each problem names the field and the fix; the
entry point is ``stsflow.config.checks.semantic_problems``."""

from __future__ import annotations

from stsflow.config.primary import resolve_primary
from stsflow.config.saes import layer_saes


def mixture_problems(config: dict) -> list[str]:
    """The data mixture (mixture:) against the rest: fine-tuning on, its method one of the run
    methods, allocation rules only with the sts strategy they belong to, a pool split on some
    domain, an explicit predictor, layer or N that the run computes."""
    from stsflow.mixture.runs import PAPER_RULE
    from stsflow.mode import RunMethod, run_methods
    from stsflow.scores import PREDICTORS, oracle_predictors, pretraining_predictors

    mix, ft = config["mixture"], config["finetune"]
    if not mix["enabled"]:
        return []
    if not ft["enabled"]:
        return ["mixture.enabled: the data mixture fine-tunes, and finetune.enabled is false. "
                "Fix: set finetune.enabled: true, or mixture.enabled: false"]
    problems = []
    runs = run_methods(ft)
    chosen = mix["method"] or runs[0]
    if chosen in runs and not RunMethod.parse(chosen).registered.sft_loop:
        sft = [r for r in runs if RunMethod.parse(r).registered.sft_loop]
        problems.append(f"mixture.method: {chosen} does not train with the SFT loop on SFT "
                        "records, which a replay of answers feeds. Fix: name an SFT run"
                        + (f" ({', '.join(sft)})" if sft else ""))
    elif mix["method"] is not None and (mix["method"] not in runs
                                        or RunMethod.parse(mix["method"]).mix is not None):
        problems.append(f"mixture.method: {mix['method']!r} is not a fine-tuning run of this "
                        f"config ({', '.join(runs)}). Fix: name one of those, or null (the first)")
    contrast = [a for a in mix["allocations"] if a != PAPER_RULE]
    if contrast and "sts" not in mix["strategies"]:
        problems.append(f"mixture.allocations: {', '.join(contrast)} are rules of the sts "
                        "strategy, which mixture.strategies does not list, so no run would use "
                        "them. Fix: add sts to mixture.strategies, or remove those rules")
    if not any(d.get("pool") for d in config["domains"].values()):
        problems.append("mixture.enabled: no domain has a pool split to replay from. Fix: give "
                        "domains.<name>.pool (a source without the test items) to the domains "
                        "to protect")
    # the site the sts and oracle strategies read: mixture: where given, else report.primary's
    keys = ("predictor", "layer", "sae", "n_top", "metric")
    given = dict(config["report"]["primary"], **{k: mix[k] for k in keys if mix[k] is not None})
    why = " (null: report.primary's)"
    for name, model in config["models"].items():
        site = resolve_primary(given, model["layers"], config["evaluate"]["metrics"],
                               config["sts"]["n_top"])
        if "sts" in mix["strategies"] and site["predictor"] not in pretraining_predictors():
            problems.append(f"mixture.predictor: {site['predictor']!r}{why} is not known before "
                            "fine-tuning, so the sts strategy cannot weigh by it. Fix: one of "
                            f"{', '.join(pretraining_predictors())}")
        if "oracle" in mix["strategies"] and site["metric"] not in config["evaluate"]["metrics"]:
            problems.append(f"mixture.metric: {site['metric']!r}{why} is not evaluated "
                            f"(evaluate.metrics: {config['evaluate']['metrics']}). Fix: one of "
                            "those")
        if "sts" not in mix["strategies"]:
            continue
        if site["n_top"] not in config["sts"]["n_top"]:
            problems.append(f"mixture.n_top: {site['n_top']}{why} is not computed (sts.n_top is "
                            f"{config['sts']['n_top']}). Fix: one of those")
        if int(site["layer"]) not in model["layers"]:
            problems.append(f"mixture.layer: model {name!r} has no layer {site['layer']}{why}. "
                            f"Fix: one of {sorted(model['layers'])}")
        elif site["sae"] not in layer_saes(model["layers"][int(site["layer"])]):
            problems.append(f"mixture.sae: model {name!r} has no SAE {site['sae']!r}{why} at "
                            f"layer {site['layer']}. Fix: one of "
                            f"{list(layer_saes(model['layers'][int(site['layer'])]))}")
    return problems


def report_primary_problems(config: dict) -> list[str]:
    """A declared primary analysis (report.primary) the run cannot produce. Only explicit values
    are checked: the defaults (null n_top = the paper's 100, null layer and metric) are resolved
    at report time, and a default the config cannot produce is stated in the report."""
    p, where = config["report"]["primary"], "report.primary"
    problems = []
    if p["n_top"] is not None and p["n_top"] not in config["sts"]["n_top"]:
        problems.append(f"{where}.n_top: {p['n_top']} is not computed (sts.n_top is "
                        f"{config['sts']['n_top']}). Fix: add it to sts.n_top or declare one of "
                        "those")
    for name, model in config["models"].items():
        if p["layer"] is not None and int(p["layer"]) not in {int(k) for k in model["layers"]}:
            problems.append(f"{where}.layer: model {name!r} has no layer {p['layer']} (it has "
                            f"{sorted(int(k) for k in model['layers'])}). Fix: configure it "
                            f"under models.{name}.layers or declare a configured layer")
    if p.get("sae") is not None:
        for name, model in config["models"].items():
            layers = ([int(p["layer"])] if p["layer"] is not None
                      else [min(int(k) for k in model["layers"])])
            for layer in [lay for lay in layers if lay in model["layers"]]:
                names = list(layer_saes(model["layers"][layer]))
                if p["sae"] not in names:
                    problems.append(f"{where}.sae: model {name!r} has no SAE {p['sae']!r} at "
                                    f"layer {layer} (it has {names}). Fix: declare one of those "
                                    "or null (the layer's sae)")
    if p["protocol"] == "extremes":
        problems.append(f"{where}.protocol: extremes selects domains on Δ, so no test of it is "
                        "valid. Fix: use all (extremes rows stay in the report, as descriptive)")
    # tuned models exist: fine-tuned here, or imported as post-hoc pairs
    finetune = config["finetune"]["enabled"] or bool(config.get("posthoc"))
    if p["predictor"].endswith("_oracle") and not finetune:
        problems.append(f"{where}.predictor: {p['predictor']} needs the fine-tuned model. Fix: set "
                        "finetune.enabled: true (or give posthoc: pairs) or declare a predictor "
                        "without _oracle")
    metrics = (list(config["evaluate"]["metrics"]) if finetune else []) + \
        [o["metric"] for o in config.get("observed", [])]
    if p["metric"] is not None and p["metric"] not in metrics:
        problems.append(f"{where}.metric: {p['metric']!r} is not measured (available: "
                        f"{sorted(set(metrics))}). Fix: declare one of them or null")
    return problems + primary_method_problems(config)


def config_runs(config: dict) -> dict[tuple[str, str], list[str]]:
    """(model, SFT set) -> its tuned runs' method names, as ``Workflow.runs`` orders them: the
    fine-tuning runs (each method's variants, then the data-mixture runs), then its post-hoc
    pairs."""
    from stsflow.mode import mixture_runs, posthoc_method, run_methods

    ft = config["finetune"]
    trained = run_methods(ft) + mixture_runs(ft, config["mixture"]) if ft["enabled"] else []
    return {(m, s): trained + [posthoc_method(label)
                               for label, pair in config.get("posthoc", {}).items()
                               if pair["model"] == m and pair["sft"] == s]
            for m in config["models"] for s in config["sft"]}


def primary_method_problems(config: dict) -> list[str]:
    """report.primary.method: a run every (model, SFT set) with tuned runs has; none to name
    where no tuned model exists (Δ given under observed: carry no method)."""
    method, where = config["report"]["primary"].get("method"), "report.primary.method"
    if method is None:
        return []
    runs = config_runs(config)
    if not any(runs.values()):
        return [f"{where}: {method!r} names a tuned run, and this config has none (finetune is "
                "off and posthoc: gives no pair; Δ given under observed: carry no method). Fix: "
                "null"]
    lacking = [f"{m}/{s}" for (m, s), names in runs.items() if names and method not in names]
    if not lacking:
        return []
    names = sorted({n for names in runs.values() for n in names})
    return [f"{where}: {method!r} is not a run of {', '.join(lacking)} (the runs: "
            f"{', '.join(names)}). Fix: one of those, as the tables' method column names it, "
            "or null (the first of finetune.methods' runs)"]


def report_matrix_problems(config: dict) -> list[str]:
    """The analysis across SFT sets (report.matrix.primary) against the run: no SFT set named as
    the cross-SFT folder, a predictor known before fine-tuning, a metric that is measured, a direction for a signed target, and a target
    domain for every SFT set under the target normalisation. Values inherited from
    report.primary are checked only where a matrix exists (two SFT sets or more)."""
    from stsflow.scores import PREDICTORS, oracle_predictors, pretraining_predictors
    from stsflow.workflow.layout import Layout

    m, where = config["report"]["matrix"]["primary"], "report.matrix.primary"
    several = len(config["sft"]) > 1
    problems = []
    if Layout.MATRIX in config["sft"]:
        problems.append(f"sft.{Layout.MATRIX}: the name is taken by each model's tables and page "
                        f"across SFT sets (results/tables/<model>/{Layout.MATRIX}/). Fix: "
                        "rename the SFT set")
    predictor = m["predictor"] or config["report"]["primary"]["predictor"]
    if (m["predictor"] is not None or several) and predictor not in pretraining_predictors():
        given = "" if m["predictor"] else " (null: report.primary.predictor)"
        known = {*PREDICTORS, *(f"{n}_oracle" for n in oracle_predictors())}
        why = ("needs the fine-tuned model, and the matrix ranks candidate SFT sets before any "
               "fine-tuning" if predictor in known else "is no registered predictor")
        problems.append(f"{where}.predictor: {predictor!r}{given} {why}. Fix: one of "
                        f"{', '.join(pretraining_predictors())}")
    finetune = config["finetune"]["enabled"] or bool(config.get("posthoc"))
    evaluated = list(config["evaluate"]["metrics"]) if finetune else []
    metrics = evaluated + [o["metric"] for o in config.get("observed", [])]
    if m["metric"] is not None and m["metric"] not in metrics:
        problems.append(f"{where}.metric: {m['metric']!r} is not measured (available: "
                        f"{sorted(set(metrics))}). Fix: declare one of them or null")
    target = m["target"] or config["report"]["primary"]["target"]
    # as config.primary.resolve_primary fills it: the first evaluated metric, else the
    # observed entries' first
    metric = m["metric"] or config["report"]["primary"]["metric"] or next(iter(metrics), None)
    if (target == "signed" and (m["target"] is not None or several) and metric is not None
            and metric not in evaluated):
        problems.append(f"{where}.target: signed needs to know whether a larger {metric!r} is "
                        "better or worse, and only the evaluated metrics "
                        f"({', '.join(evaluated) or 'none'}) declare it. Fix: target abs, or "
                        "an evaluated metric")
    if m["normalisation"] == "target":
        missing = [name for name, s in config["sft"].items() if not s.get("target")]
        if missing:
            problems.append(f"{where}.normalisation: target divides by the score on each SFT "
                            f"set's own domain, and {', '.join(f'sft.{n}' for n in missing)} "
                            "give(s) no target. Fix: set sft.<name>.target, or another "
                            "normalisation (zscore, rank, none)")
    return problems
