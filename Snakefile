from snakemake.utils import min_version, validate

min_version("9.0")


# config.yaml is the default; a --configfile given on the command line replaces it
# (instead of being merged into it, which would keep the default's models).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# `--config questions_per_dataset=null` arrives as the string "null": the whole split.
if config.get("questions_per_dataset") in ("null", "None", "none", "~", "all"):
    config["questions_per_dataset"] = None

validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/generation.smk"
include: "workflow/rules/grading.smk"
include: "workflow/rules/windows.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/structured.smk"
include: "workflow/rules/prefill.smk"
include: "workflow/rules/likelihood.smk"


rule all:
    default_target: True
    input:
        final_targets(),
