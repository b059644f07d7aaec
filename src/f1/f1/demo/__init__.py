"""The ``f1 demo`` experiment: a wing of its own that uses the library (data, envs, model, train, eval) and
that nothing in the library imports; only the command line does.

- :mod:`f1.demo.budget`: how big a run is (:class:`DemoBudget`, :data:`DEMO_BUDGETS`, the demo's task),
  and how the training steps are sized to the wall clock and spread over the stages;
- :mod:`f1.demo.data`: recording the scripted expert's demonstrations as LeRobot datasets;
- :mod:`f1.demo.policy`: the demo's policy configuration in each mode;
- :mod:`f1.demo.training`: the tokenizer and the F1 stages through the library's trainer;
- :mod:`f1.demo.workers`: training the policies side by side in worker processes;
- :mod:`f1.demo.report`: the report (``report.json``, ``report.md``, figures), assembled in one place;
- :mod:`f1.demo.run`: :func:`run_demo`, the pipeline as a sequence of phases;
- :mod:`f1.demo.pretraining`: :func:`pretrain_demo`, stages I-II trained once for the shipped checkpoints;
- :mod:`f1.demo.pretrained`: their directory format (:func:`load_pretrained`, :func:`export_pretrained`).

Quick start::

    from f1.demo import run_demo
    run_demo("runs/demo", "quick")          # what `f1 demo --quick` does
    run_demo("runs/demo", pretrained="pretrained/demo")   # what `make demo` does
"""

from f1.demo.budget import DEMO_BUDGETS, DEMO_TASK, DemoBudget
from f1.demo.data import CAMERA, RecordedDataset, record_demonstrations, table_task, task_record
from f1.demo.pretrained import PretrainedDemo, export_pretrained, load_pretrained
from f1.demo.pretraining import pretrain_demo
from f1.demo.run import DemoResult, run_demo

__all__ = [
    "CAMERA",
    "DEMO_BUDGETS",
    "DEMO_TASK",
    "DemoBudget",
    "DemoResult",
    "PretrainedDemo",
    "RecordedDataset",
    "export_pretrained",
    "load_pretrained",
    "pretrain_demo",
    "record_demonstrations",
    "run_demo",
    "table_task",
    "task_record",
]
