# teacher energies/forces (every split) + Hessian rows (chosen splits), one job per subset x teacher; or, with
# teachers.<name>.shards: N > 1, N label_teacher_shard jobs + one label_teacher_merge job writing the same files
# (hessdistill.jobs.label_shards: work is cached per structure, so a killed shard or a new N recomputes nothing)


rule label_teacher:
    input:
        structures=f"{RESULTS}/{{subset}}/data/structures.h5",
    output:
        labels=f"{RESULTS}/{{subset}}/teachers/{{teacher}}/labels.h5",
        hessians=f"{RESULTS}/{{subset}}/teachers/{{teacher}}/hessians.h5",
    log:
        f"{RESULTS}/logs/label_teacher/{{subset}}/{{teacher}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/label_teacher/{{subset}}/{{teacher}}.tsv"
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
        "../workflow_scripts/label_teacher.py"


rule label_teacher_shard:
    input:
        structures=f"{RESULTS}/{{subset}}/data/structures.h5",
    output:
        shard=f"{RESULTS}/{{subset}}/teachers/{{teacher}}/label_shards/{{shard}}.json",
    log:
        f"{RESULTS}/logs/label_teacher_shard/{{subset}}/{{teacher}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/label_teacher_shard/{{subset}}/{{teacher}}/{{shard}}.tsv"
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
        "../workflow_scripts/label_teacher_shard.py"


rule label_teacher_merge:
    input:
        structures=f"{RESULTS}/{{subset}}/data/structures.h5",
        shards=label_shard_files,
    output:
        labels=f"{RESULTS}/{{subset}}/teachers/{{teacher}}/labels.h5",
        hessians=f"{RESULTS}/{{subset}}/teachers/{{teacher}}/hessians.h5",
    log:
        f"{RESULTS}/logs/label_teacher_merge/{{subset}}/{{teacher}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/label_teacher_merge/{{subset}}/{{teacher}}.tsv"
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
        "../workflow_scripts/label_teacher_merge.py"
