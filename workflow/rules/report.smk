wildcard_constraints:
    figure="|".join(catalog.FIGURES),


rule plot_figure:
    input:
        curves=model_tables("curves"),
        windows=model_tables("windows"),
        distributions=model_tables("distributions"),
    output:
        html="results/{model}/figures/{figure}.html",
        png=report(
            "results/{model}/figures/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "{figure}"},
        ),
    log:
        "results/logs/plot_figure/{model}/{figure}.log",
    benchmark:
        "results/benchmarks/plot_figure/{model}/{figure}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        # spliced into report/figure.rst when the report is built
        caption=lambda wc: Path(
            workflow.basedir, "workflow", "report", f"{wc.figure}.rst"
        ).read_text(),
        code=stage_code("plot_figure"),
    script:
        "../scripts/plot_figure.py"


rule build_explorer:
    input:
        questions=dataset_tables(),
        base=model_tables("base"),
        truncated=model_tables("truncated"),
        curves=model_tables("curves"),
        windows=model_tables("windows"),
        importance=model_tables("importance"),
        distributions=model_tables("distributions"),
    output:
        html=report(
            "results/{model}/explorer.html",
            caption="../report/explorer.rst",
            category="Explorer",
            subcategory="{model}",
        ),
    log:
        "results/logs/build_explorer/{model}.log",
    benchmark:
        "results/benchmarks/build_explorer/{model}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        # Not in the config schema yet: the page stays light with 100 per dataset.
        questions_per_dataset=config.get("explorer", {}).get(
            "questions_per_dataset", 100
        ),
        code=stage_code("build_explorer"),
    script:
        "../scripts/build_explorer.py"
