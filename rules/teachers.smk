# teacher energies/forces (every split) + Hessian rows (chosen splits), one job per subset x teacher


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
