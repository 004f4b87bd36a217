"""Measurement: `fastalex bench`, `fastalex kernels` and the pytest-benchmark suites in benchmarks/.

Every figure is measured in the running process: the device's copy bandwidth, then each operator
for a fastalex backend and for torch (eager, and compiled where asked) on the same inputs, so the
ratios compare like with like.

    timing.py     timing primitives; the device's copy bandwidth and matmul rate; versions
    report.py     Row (one figure against its reference), the table, the plot
    ops.py        LRN, max-pool, the fused ReLU/LRN/max-pool (GB/s)
    conv.py       AlexNet's convolutions against cuDNN (TFLOP/s)
    model.py      the whole model, train step and inference (img/s)
    pipeline.py   the augmentation and a training epoch (img/s, time waiting for data)
    cli.py        the `fastalex bench` command
"""
