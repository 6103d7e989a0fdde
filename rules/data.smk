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
    threads: family_threads("prepare")
    resources:
        **family_resources("prepare"),
    conda:
        prepare_env
    script:
        "../workflow_scripts/prepare_subset.py"
