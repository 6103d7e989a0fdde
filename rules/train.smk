# train one student run per subset x teacher x run


rule train_run:
    input:
        structures=f"{RESULTS}/{{subset}}/data/structures.h5",
        labels=f"{RESULTS}/{{subset}}/teachers/{{teacher}}/labels.h5",
        hessians=f"{RESULTS}/{{subset}}/teachers/{{teacher}}/hessians.h5",
    output:
        model=f"{RESULTS}/{{subset}}/runs/{{teacher}}/{{run}}/model.pt",
        log_csv=f"{RESULTS}/{{subset}}/runs/{{teacher}}/{{run}}/log.csv",
        summary=f"{RESULTS}/{{subset}}/runs/{{teacher}}/{{run}}/summary.json",
    log:
        f"{RESULTS}/logs/train_run/{{subset}}/{{teacher}}/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_run/{{subset}}/{{teacher}}/{{run}}.tsv"
    params:
        run=run_params,
        code=CODE["train"],
    threads: family_threads("train")
    resources:
        **family_resources("train", "train"),
    conda:
        train_env
    script:
        "../workflow_scripts/train_run.py"
