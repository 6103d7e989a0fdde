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
            log_path("download_source", "{path}"),
        benchmark:
            benchmark_path("download_source", "{path}")
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
            "../workflow_scripts/run_job.py"


rule prepare_subset:
    input:
        subset_source_files,
    output:
        structures_path("{subset}"),
    log:
        log_path("prepare_subset", "{subset}"),
    benchmark:
        benchmark_path("prepare_subset", "{subset}")
    params:
        spec=subset_params,
        code=CODE["data"],
    threads: family_threads("prepare")
    resources:
        **family_resources("prepare"),
    conda:
        prepare_env
    script:
        "../workflow_scripts/run_job.py"
