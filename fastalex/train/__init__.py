"""`fastalex train` and `fastalex eval`: the paper's recipe on top of the library.

    config.py       TrainConfig: every option, defaults by device, checks; what --resume may change
    distributed.py  torchrun's process group, the ranks, collectives
    augment.py      the paper's augmentation on device batches, reproducible from (seed, epoch, step)
    loop.py         load_data, train_one_epoch, train (main)
    evaluate.py     the validation pass and `fastalex eval` (centre crop or ten crops)
    metrics.py      per-epoch sums, the epoch line, metrics.csv/json, curves.png
    checkpoint.py   atomic writes, checked loads, RNG states
    signals.py      Ctrl-C / SIGTERM: finish the step, checkpoint, stop
    cli.py          the command-line options of train and eval
"""
from fastalex.train.config import TrainConfig
from fastalex.train.evaluate import run_eval
from fastalex.train.loop import train

__all__ = ["TrainConfig", "run_eval", "train"]
