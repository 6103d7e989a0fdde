# evaluate each run, and each teacher as a pseudo-run, through the same protocols: one job per evaluation.
# The vibrations evaluations share the teacher's minima: relaxed and its Hessians taken once per subset and
# teacher (rule teacher_minima), not once per student.
# test/vibrations/relax always run on CPU; md and speed are separate rules so they alone request a GPU when
# use_gpu is set.  The disagreement evaluation (student runs only) has a rule of its own: its inputs include the
# partner runs' models and it writes the flagged frames beside its JSON.

CPU_EVALUATIONS = [e for e in EVALUATIONS if e not in GPU_EVALUATIONS and e not in STUDENT_ONLY]
DEVICE_EVALUATIONS = [e for e in EVALUATIONS if e in GPU_EVALUATIONS and e not in STUDENT_ONLY]

for _name, _evs, _kind, _family in (
    ("evaluate_run", CPU_EVALUATIONS, None, "evaluate"),
    ("evaluate_run_md_speed", DEVICE_EVALUATIONS, "evaluation", "evaluate_device"),
):

    rule:
        name:
            _name
        input:
            model=run_file("{subset}", "{teacher}", "{run}", "model.pt"),
            structures=structures_path("{subset}"),
            labels=labels_path("{subset}", "{teacher}"),
            hessians=hessians_path("{subset}", "{teacher}"),
            minima=minima_input,
        output:
            eval_path("{subset}", "{teacher}", "{run}", "{evaluation}"),
        wildcard_constraints:
            evaluation=_alternatives(_evs),
        log:
            log_path(_name, "{subset}", "{teacher}", "{run}", "{evaluation}"),
        benchmark:
            benchmark_path(_name, "{subset}", "{teacher}", "{run}", "{evaluation}")
        params:
            evaluation=evaluation_params,
            code=CODE["evaluate"],
        threads: family_threads(_family)
        resources:
            **family_resources(_family, _kind),
        conda:
            evaluation_env
        script:
            "../workflow_scripts/run_job.py"


rule evaluate_run_disagreement:
    input:
        model=run_file("{subset}", "{teacher}", "{run}", "model.pt"),
        partners=disagreement_partner_models,
        structures=structures_path("{subset}"),
    output:
        eval_path("{subset}", "{teacher}", "{run}", "disagreement"),
        flagged=flagged_path("{subset}", "{teacher}", "{run}"),
    log:
        log_path("evaluate_run_disagreement", "{subset}", "{teacher}", "{run}"),
    benchmark:
        benchmark_path("evaluate_run_disagreement", "{subset}", "{teacher}", "{run}")
    params:
        evaluation=disagreement_params,
        code=CODE["evaluate"],
    threads: family_threads("evaluate_device")
    resources:
        **family_resources("evaluate_device", "disagreement"),
    conda:
        disagreement_env
    script:
        "../workflow_scripts/run_job.py"


for _name, _evs, _kind, _family in (
    ("evaluate_teacher", CPU_EVALUATIONS, None, "evaluate_teacher"),
    ("evaluate_teacher_md_speed", DEVICE_EVALUATIONS, "evaluation", "evaluate_teacher_device"),
):

    rule:
        name:
            _name
        input:
            structures=structures_path("{subset}"),
            labels=labels_path("{subset}", "{teacher}"),
            hessians=hessians_path("{subset}", "{teacher}"),
            minima=minima_input,
        output:
            eval_path("{subset}", "{teacher}", None, "{evaluation}"),
        wildcard_constraints:
            evaluation=_alternatives(_evs),
        log:
            log_path(_name, "{subset}", "{teacher}", "{evaluation}"),
        benchmark:
            benchmark_path(_name, "{subset}", "{teacher}", "{evaluation}")
        params:
            evaluation=evaluation_params,
            code=CODE["evaluate"],
        threads: family_threads(_family)
        resources:
            **family_resources(_family, _kind),
        conda:
            evaluation_env
        script:
            "../workflow_scripts/run_job.py"


rule teacher_minima:
    input:
        structures=structures_path("{subset}"),
    output:
        minima_path("{subset}", "{teacher}"),
    log:
        log_path("teacher_minima", "{subset}", "{teacher}"),
    benchmark:
        benchmark_path("teacher_minima", "{subset}", "{teacher}")
    params:
        minima=minima_params,
        code=CODE["minima"],
    threads: family_threads("evaluate_teacher")
    resources:
        **family_resources("evaluate_teacher"),
    conda:
        teacher_env
    script:
        "../workflow_scripts/run_job.py"
