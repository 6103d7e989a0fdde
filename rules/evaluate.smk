# evaluate each run, and each teacher as a pseudo-run, through the same protocols: one job per evaluation.
# The vibrations evaluations share the teacher's minima: relaxed and its Hessians taken once per subset and
# teacher (rule teacher_minima), not once per student.
# test/vibrations/relax always run on CPU; md and speed are separate rules so they alone request a GPU when
# use_gpu is set.

CPU_EVALUATIONS = [e for e in EVALUATIONS if e not in GPU_EVALUATIONS]
DEVICE_EVALUATIONS = [e for e in EVALUATIONS if e in GPU_EVALUATIONS]

for _name, _evs, _kind, _family in (
    ("evaluate_run", CPU_EVALUATIONS, None, "evaluate"),
    ("evaluate_run_md_speed", DEVICE_EVALUATIONS, "evaluation", "evaluate_device"),
):

    rule:
        name:
            _name
        input:
            model=f"{RESULTS}/{{subset}}/runs/{{teacher}}/{{run}}/model.pt",
            structures=f"{RESULTS}/{{subset}}/data/structures.h5",
            labels=f"{RESULTS}/{{subset}}/teachers/{{teacher}}/labels.h5",
            hessians=f"{RESULTS}/{{subset}}/teachers/{{teacher}}/hessians.h5",
            minima=minima_input,
        output:
            f"{RESULTS}/{{subset}}/runs/{{teacher}}/{{run}}/eval/{{evaluation}}.json",
        wildcard_constraints:
            evaluation=_alternatives(_evs),
        log:
            f"{RESULTS}/logs/{_name}/{{subset}}/{{teacher}}/{{run}}/{{evaluation}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/{_name}/{{subset}}/{{teacher}}/{{run}}/{{evaluation}}.tsv"
        params:
            evaluation=evaluation_params,
            code=CODE["evaluate"],
        threads: family_threads(_family)
        resources:
            **family_resources(_family, _kind),
        conda:
            teacher_env
        script:
            "../workflow_scripts/evaluate.py"


for _name, _evs, _kind, _family in (
    ("evaluate_teacher", CPU_EVALUATIONS, None, "evaluate_teacher"),
    ("evaluate_teacher_md_speed", DEVICE_EVALUATIONS, "evaluation", "evaluate_teacher_device"),
):

    rule:
        name:
            _name
        input:
            structures=f"{RESULTS}/{{subset}}/data/structures.h5",
            labels=f"{RESULTS}/{{subset}}/teachers/{{teacher}}/labels.h5",
            hessians=f"{RESULTS}/{{subset}}/teachers/{{teacher}}/hessians.h5",
            minima=minima_input,
        output:
            f"{RESULTS}/{{subset}}/teachers/{{teacher}}/eval/{{evaluation}}.json",
        wildcard_constraints:
            evaluation=_alternatives(_evs),
        log:
            f"{RESULTS}/logs/{_name}/{{subset}}/{{teacher}}/{{evaluation}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/{_name}/{{subset}}/{{teacher}}/{{evaluation}}.tsv"
        params:
            evaluation=evaluation_params,
            code=CODE["evaluate"],
        threads: family_threads(_family)
        resources:
            **family_resources(_family, _kind),
        conda:
            teacher_env
        script:
            "../workflow_scripts/evaluate.py"


rule teacher_minima:
    input:
        structures=f"{RESULTS}/{{subset}}/data/structures.h5",
    output:
        f"{RESULTS}/{{subset}}/teachers/{{teacher}}/vibrations_minima.h5",
    log:
        f"{RESULTS}/logs/teacher_minima/{{subset}}/{{teacher}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/teacher_minima/{{subset}}/{{teacher}}.tsv"
    params:
        minima=minima_params,
        code=CODE["minima"],
    threads: family_threads("evaluate_teacher")
    resources:
        **family_resources("evaluate_teacher"),
    conda:
        teacher_env
    script:
        "../workflow_scripts/teacher_minima.py"
