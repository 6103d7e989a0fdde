# train one student run per subset x teacher x run


rule train_run:
    input:
        structures=structures_path("{subset}"),
        labels=labels_path("{subset}", "{teacher}"),
        hessians=hessians_path("{subset}", "{teacher}"),
        # the train splits of the run's extra_train_subsets (none for most runs)
        extra_structures=extra_train_inputs("structures"),
        extra_labels=extra_train_inputs("labels"),
        extra_hessians=extra_train_inputs("hessians"),
    output:
        model=run_file("{subset}", "{teacher}", "{run}", "model.pt"),
        log_csv=run_file("{subset}", "{teacher}", "{run}", "log.csv"),
        summary=run_file("{subset}", "{teacher}", "{run}", "summary.json"),
    log:
        log_path("train_run", "{subset}", "{teacher}", "{run}"),
    benchmark:
        benchmark_path("train_run", "{subset}", "{teacher}", "{run}")
    params:
        run=run_params,
        code=CODE["train"],
    threads: family_threads("train")
    resources:
        **family_resources("train", "train"),
    conda:
        train_env
    script:
        "../workflow_scripts/run_job.py"
