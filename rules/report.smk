# paper-style tables (md/csv/tex) and figures from every evaluation + training log; `snakemake --report
# report.html` (after a run) packs the figures and tables with their captions (report/*.rst) into one HTML.

localrules:
    report,


rule report:
    input:
        evals=all_eval_outputs(),
        runs=report_run_files(),
    output:
        summary_csv=report_path("summary.csv"),
        summary_md=report_path("summary.md"),
        accuracy=report(
            report_path("table_accuracy.csv"),
            caption="../report/table_accuracy.rst",
            category="Tables",
        ),
        speed=report(
            report_path("table_speed.csv"),
            caption="../report/table_speed.rst",
            category="Tables",
        ),
        dynamics=report(
            report_path("table_dynamics.csv"),
            caption="../report/table_dynamics.rst",
            category="Tables",
        ),
        tables_md_tex=expand(
            report_path("{name}.{ext}"),
            name=["table_accuracy", "table_speed", "table_dynamics"],
            ext=["md", "tex"],
        ),
        fig_accuracy=report(
            report_path("fig_accuracy_vs_speed.png"),
            caption="../report/fig_accuracy_vs_speed.rst",
            category="Figures",
        ),
        fig_parity=report(
            report_path("fig_parity.png"),
            caption="../report/fig_parity.rst",
            category="Figures",
        ),
        fig_md=report(
            report_path("fig_md_energy.png"),
            caption="../report/fig_md_energy.rst",
            category="Figures",
        ),
        fig_stability=report(
            report_path("fig_stability.png"),
            caption="../report/fig_stability.rst",
            category="Figures",
        ),
        fig_training=report(
            report_path("fig_training.png"),
            caption="../report/fig_training.rst",
            category="Figures",
        ),
        fig_phonons=report(
            report_path("fig_phonons.png"),
            caption="../report/fig_phonons.rst",
            category="Figures",
        ),
    log:
        log_path("report", "report"),
    benchmark:
        benchmark_path("report", "report")
    params:
        report=canon(config["report"]),
        runs=canon({r: {"method": v.get("method", "hessian")} for r, v in config["runs"].items()}),
        code=CODE["report"],
    threads: family_threads("report")
    resources:
        **family_resources("report"),
    conda:
        CORE_ENV
    script:
        "../workflow_scripts/run_job.py"
