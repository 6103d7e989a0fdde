# source file download (checksummed) -> source -> selectors -> split -> structure store (one job per subset)

if DOWNLOADS:

    localrules:
        download_source,

    rule download_source:
        output:
            "{path}",
        wildcard_constraints:
            path=_alternatives(DOWNLOADS),
        log:
            f"{RESULTS}/logs/download_source/{{path}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/download_source/{{path}}.tsv"
        params:
            spec=download_params,
            code=CODE["download"],
        threads: 1
        resources:
            mem_mb=1000,
            runtime=600,
        conda:
            CORE_ENV
        script:
            "../workflow_scripts/download_source.py"


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
        code=CODE["data"],
    threads: family_threads("prepare")
    resources:
        **family_resources("prepare"),
    conda:
        prepare_env
    script:
        "../workflow_scripts/prepare_subset.py"
