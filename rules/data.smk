# source -> selectors -> split -> structure store (one job per subset)


rule prepare_subset:
    input:
        subset_source_files,
    output:
        f"{RESULTS}/{{subset}}/data/structures.h5",
    log:
        f"{RESULTS}/logs/prepare_subset/{{subset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_subset/{{subset}}.tsv"
    params:
        spec=subset_params,
        code_version=CODE_VERSION["data"],
    threads: 2
    resources:
        mem_mb=mem_scaled(4000),
        runtime=60,
    script:
        "../workflow_scripts/prepare_subset.py"
