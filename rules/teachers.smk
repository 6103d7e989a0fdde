# teacher energies/forces (every split) + Hessian rows (chosen splits), one job per subset x teacher; or, with
# teachers.<name>.shards: N > 1, N label_teacher_shard jobs + one label_teacher_merge job writing the same files
# (hessdistill.jobs.label_shards: work is cached per structure, so a killed shard or a new N recomputes nothing)


rule label_teacher:
    input:
        structures=structures_path("{subset}"),
    output:
        labels=labels_path("{subset}", "{teacher}"),
        hessians=hessians_path("{subset}", "{teacher}"),
    log:
        log_path("label_teacher", "{subset}", "{teacher}"),
    benchmark:
        benchmark_path("label_teacher", "{subset}", "{teacher}")
    wildcard_constraints:
        teacher=_alternatives(UNSHARDED_TEACHERS),
    params:
        teacher=teacher_params,
        code=CODE["teachers"],
    threads: family_threads("label")
    resources:
        **family_resources("label", "label"),
    conda:
        teacher_env
    script:
        "../workflow_scripts/run_job.py"


rule label_teacher_shard:
    input:
        structures=structures_path("{subset}"),
    output:
        shard=label_shard_path("{subset}", "{teacher}", "{shard}"),
    log:
        log_path("label_teacher_shard", "{subset}", "{teacher}", "{shard}"),
    benchmark:
        benchmark_path("label_teacher_shard", "{subset}", "{teacher}", "{shard}")
    wildcard_constraints:
        teacher=_alternatives(SHARDED_TEACHERS),
        shard=r"\d+",
    params:
        teacher=teacher_params,
        shards=label_shard_params,
        code=CODE_LABEL_SHARDS["label_teacher_shard"],
    threads: family_threads("label")
    resources:
        **family_resources("label", "label"),
    conda:
        teacher_env
    script:
        "../workflow_scripts/run_job.py"


rule label_teacher_merge:
    input:
        structures=structures_path("{subset}"),
        shards=label_shard_files,
    output:
        labels=labels_path("{subset}", "{teacher}"),
        hessians=hessians_path("{subset}", "{teacher}"),
    log:
        log_path("label_teacher_merge", "{subset}", "{teacher}"),
    benchmark:
        benchmark_path("label_teacher_merge", "{subset}", "{teacher}")
    wildcard_constraints:
        teacher=_alternatives(SHARDED_TEACHERS),
    params:
        teacher=teacher_params,
        shards=label_shard_params,
        code=CODE_LABEL_SHARDS["label_teacher_merge"],
    threads: 1
    resources:
        **family_resources("label"),
    conda:
        CORE_ENV
    script:
        "../workflow_scripts/run_job.py"
