# collect every test.json (+ speed.json for the speed-up) into one table; the paper-style report is later work


rule report:
    input:
        report_inputs(),
    output:
        csv=f"{RESULTS}/report/summary.csv",
        md=f"{RESULTS}/report/summary.md",
    log:
        f"{RESULTS}/logs/report/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/report.tsv"
    params:
        report=canon(config["report"]),
        code_version=CODE_VERSION["report"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow_scripts/report.py"
