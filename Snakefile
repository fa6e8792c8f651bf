from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/generation.smk"
include: "workflow/rules/grading.smk"
include: "workflow/rules/windows.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_targets(),
    default_target: True
