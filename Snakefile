# hessdistill workflow: subset -> teacher labels + Hessians -> train student runs -> evaluate -> report.
#
# Usage (from the repository root, in the environment with `pip install -c constraints.txt -e '.[chgnet,workflow]'`):
#
#   snakemake -c 2                                   # the embedded default (config.yaml): built-in perovskites,
#                                                    # CHGNet teacher, two small PaiNN runs, CPU, ~15 min on 2 cores
#   snakemake -c 2 --configfile configs/ci-tiny.yaml # the tiny CI configuration (~2-3 min)
#   snakemake -n -c 2 --configfile X.yaml            # dry run: what would (re)run and why
#   snakemake -c 2 --directory /scratch/me --snakefile Snakefile --configfile configs/ci-tiny.yaml
#                                                    # results/ under another directory
#
# A `--configfile` given on the command line REPLACES the embedded config.yaml (it is the whole experiment:
# subsets x teachers x runs); `--config key=value` alone overrides single keys of config.yaml.  The config is
# validated against schemas/config.schema.yaml at start, so a misspelt key fails naming that key.
#
# Outputs (all under results/):
#   {subset}/data/structures.h5                          rule prepare_subset
#   {subset}/teachers/{teacher}/labels.h5, hessians.h5   rule label_teacher
#   {subset}/runs/{teacher}/{run}/model.pt (+log.csv, summary.json)     rule train_run
#   {subset}/runs/{teacher}/{run}/eval/{evaluation}.json rule evaluate_run
#   {subset}/teachers/{teacher}/eval/{evaluation}.json   rule evaluate_teacher (the teacher as a pseudo-run)
#   {subset}/teachers/{teacher}/vibrations_minima.h5     rule teacher_minima (teacher-relaxed structures and the
#                                                        teacher's Hessians there, shared by vibrations evaluations)
#   report/summary.csv, report/summary.md                rule report
#   logs/..., benchmarks/...                             one log and one benchmark file per job
#
# Reruns: each rule's `params` holds exactly the canonical (sorted, plain) config sub-tree that decides its
# output plus a `code_version`, so Snakemake's params trigger reruns just the affected jobs; bump a
# family's code_version in rules/common.smk when library changes alter its results.
# GPU: set `use_gpu: true`; then labels, train, MD and speed jobs request `gpu=1` and run on cuda.

import os

from snakemake.utils import min_version

min_version("9.19")

if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    subset=_alternatives(config["subsets"]),
    teacher=_alternatives(config["teachers"]),
    run=_alternatives(config["runs"]),
    evaluation=_alternatives(EVALUATIONS),


include: "rules/data.smk"
include: "rules/teachers.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_eval_outputs(),
        REPORT_OUTPUTS,
