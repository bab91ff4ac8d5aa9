"""The study's presets: tasks (data, model, optimiser) and the protocol (epochs, ranks, seeds).

A task spec is the data (an :func:`s4dss.data.get_task` config), the full model at state
dimension ``N`` (:class:`s4dss.S4Model` arguments) and the optimiser settings
(:class:`s4dss.train.TrainConfig` fields). A preset adds the protocol the arm table is built
from (:func:`benchmarks.study.arms.build_arms`):

``seeds``            seeds of every arm (seed s pre-trains ``pre/s`` and seeds what derives from it)
``corr_seeds``       extra seeds that only run pre-training -> BT at ``corr_rank`` -> main
                     training (more points for the correlation claim, within one stage)
``ranks``            the reduced state dimensions r
``pre_epochs``       pre-training at N (past the knee of the learning curve: see
                     ``benchmarks/results/study-probes/``)
``main_epochs``      main training after reduction (and of the same-epochs baselines)
``corr_epochs``      pre-training snapshots that are reduced too (claim c, across stages)
``scratch_budgets``  budgets of the Skew-HiPPO-at-r runs from scratch: ``"main"`` (main
                     epochs), ``"flops"`` (equal analytic training FLOPs to pre-training + main
                     training), ``"wall"`` (equal wall time, from ``wall_ratio``)
``cont``             run the ``cont`` arms (default True)
``wall_ratio``       measured seconds per epoch of the N model over the r model, per r
                     (CPU seconds, ``study-probes/cost-cpu.md``; a fixed number, so the arm
                     table is deterministic)
``issue11``          (preset level) add the arms of issue 11 (:func:`arms.issue11_arms`)
``hsv_reg``          the ``regpre`` arms' ``train.hsv_reg`` (its ``order`` is each r)
``reg_ssm_lr``       the ``regpre`` arms' SSM learning rate (default: the model's ``ssm_lr``)
``reg_control``      add ``lrpre`` / ``lrbt0`` / ``lrbt`` (``reg_ssm_lr`` without the regulariser)
``intrain_epoch``    epoch after which the ``intrain`` arms reduce N -> r (default pre // 2)
``issue11_ranks``    the r of the issue-11 arms (default: ``ranks``)

Every r-state model from scratch has per-channel poles ``Lambda`` ``(H, r)`` like a reduced
layer, so at a given r all arms train exactly the same parameters with the same optimiser.
"""

from __future__ import annotations

import copy

# Optimiser settings shared by all tasks: AdamW, cosine schedule, SSM parameters at their own
# lr (MODEL's ssm_lr) and no weight decay (their own groups, s4dss.param_groups).
TRAIN = dict(batch_size=32, lr=4e-3, weight_decay=0.01, schedule="cosine", grad_clip=1.0)
# d_model 32 rather than 64: 2.5-2.8x cheaper per step (study-probes/timing.md), which is what
# lets pre-training run past the knee of the learning curve within the cpu budget.
# ssm_lr 1e-2 (the DSS default is 1e-3) for every arm: the HSV regulariser needs it (at 1e-3 it
# barely moves the HSVs: tail beyond 4 0.78 -> 0.72 on digits), and plain training is at least
# as good with it (full model, test: digits 97.0 vs 91.4 %, OSULeaf 72.7 vs 72.3 %, Pathfinder
# in study-probes/regprobe.md), so one SSM lr keeps every comparison fair.
MODEL = dict(d_model=32, n_layers=2, d_state=64, prenorm=True, pool="mean", kernel_dtype="float32",
             ssm_lr=1e-2)  # fmt: skip

# Published test accuracies on the official UCR train/test split (the full models' accuracies
# are reported next to them). Sources: ResNet, FCN, MLP: Ismail Fawaz et al., "Deep learning for
# time series classification: a review" (DMKD 2019), 5 runs, results/results-ucr-128.csv in
# github.com/hfawaz/dl-4-tsc; InceptionTime: Ismail Fawaz et al. (DMKD 2020),
# results-InceptionTime-128.csv in github.com/hfawaz/InceptionTime; ROCKET: Dempster et al.
# (DMKD 2020), 10 runs, results/results_ucr.csv in github.com/angus924/rocket.
REFERENCES = {
    "osuleaf": "ResNet 98.02 ± 0.61 %, FCN 97.85 %, InceptionTime 94.21 %, ROCKET 94.09 %, "
    "MLP 55.95 %",
    "acsf1": "ResNet 91.6 ± 2.6 %, InceptionTime 92.0 %, FCN 89.8 %, ROCKET 88.6 %, MLP 55.8 %",
}

TASKS: dict[str, dict] = {
    # sklearn digits, each of the 64 pixels held for 4 steps: L = 256, 1257/270/270 items
    "digits256": {
        "task": {"name": "digits-256"},
        "model": dict(MODEL),
        "train": dict(TRAIN, warmup_steps=40),
    },
    # generated Pathfinder, 16x16 (L = 256): the largest size whose runs fit the cpu budget
    # (study-probes/timing.md: 24x24 and 32x32 cost 3-5x more per epoch)
    "pathfinder16": {
        "task": dict(
            name="pathfinder-synth",
            data_dir="pathfinder16",
            n=4000,
            seed=0,
            size=16,
            path_length=10,
            n_paths=2,
        ),
        "model": dict(MODEL, n_layers=3),  # as in round 1 (paper-cpu), where it learned
        "train": dict(TRAIN, warmup_steps=100),
    },  # fmt: skip
    # UCR OSULeaf (aeon): 6 classes, L = 427, official 200 train (160 + 40 val) / 242 test
    "osuleaf": {
        "task": {"name": "osuleaf"},
        "reference": REFERENCES["osuleaf"],
        "model": dict(MODEL),
        "train": dict(TRAIN, batch_size=16, warmup_steps=20),
    },
    # UCR ACSF1 (aeon): 10 classes, L = 1460, official 100 train (80 + 20 val) / 100 test
    "acsf1": {
        "task": {"name": "acsf1"},
        "reference": REFERENCES["acsf1"],
        "model": dict(MODEL),
        "train": dict(TRAIN, batch_size=16, warmup_steps=10),
    },
}


def task_spec(name: str, **changes) -> dict:
    """A deep copy of ``TASKS[name]`` with sections updated by ``changes`` (dicts merged)."""
    spec = copy.deepcopy(TASKS[name])
    for section, values in changes.items():
        if isinstance(values, dict) and isinstance(spec.get(section), dict):
            spec[section].update(values)
        else:
            spec[section] = values
    return spec


TINY = dict(d_model=16, n_layers=1, d_state=16, prenorm=True, pool="mean", kernel_dtype="float32",
            ssm_lr=1e-2)  # fmt: skip

PRESETS: dict[str, dict] = {
    # CI smoke test (a couple of minutes of CPU): two tasks, a tiny model, every arm kind
    # (issue 11's at the smaller r only), 3 seeds, so every table, test and plot of the report
    # is exercised. Not a result: the models are far from converged and wall_ratio is a
    # placeholder, not a measurement.
    "quick": {
        "threads": 1,
        "jobs": 1,
        "issue11": True,
        "protocol": dict(
            seeds=[0, 1, 2],
            corr_seeds=[],
            ranks=[4, 2],
            corr_rank=2,
            pre_epochs=4,
            main_epochs=2,
            corr_epochs=[2],
            scratch_budgets=["main", "flops", "wall"],
            wall_ratio={4: 1.5, 2: 1.6},
            hsv_reg=dict(weight=1.0, kind="tail", channels=4),
            issue11_ranks=[2],
        ),
        "tasks": {
            "digits256": task_spec("digits256", model=TINY, train=dict(lr=1e-2, warmup_steps=10)),
            "osuleaf": task_spec(
                "osuleaf",
                model=TINY,
                train=dict(lr=1e-2, warmup_steps=5),
                protocol=dict(pre_epochs=8, main_epochs=3, corr_epochs=[4]),
            ),
        },
    },
    # Sized from the probes in benchmarks/results/study-probes/ (curves.md, regprobe.md,
    # cost-cpu.md, budget-cpu.md). Epochs: pre-training past the knee of the full model's
    # learning curve (knees at epoch 10 / 14 / 43 for digits / Pathfinder / OSULeaf at constant
    # lr; Pathfinder at SSM lr 1e-2 has 90 % of its gain by epoch 8 -> 20 / 15 / 50 epochs with
    # a cosine schedule), main training at the knee of the BT -> r curve (7 / 15 / 17 -> 8 / 10
    # / 20; Pathfinder cut from 15 to fit the budget). wall_ratio: CPU seconds per epoch at N
    # over those at r, interleaved in one process (cost-cpu.md, blocked-power kernel: 1.08-1.21;
    # the exp kernel's 1.85-3.51 are in cost-cpu-oldkernel.md). Budget (probes.budget): every
    # arm's epochs x the CPU seconds per epoch of its model (CPU seconds = an idle core's time),
    # plus its evaluations, scheduled as the runner schedules (table order, parents first, 2
    # workers): ~2.7 h serial, ~1.3 h with --jobs 2 on an idle 2-core machine (budget-cpu.md).
    # Left out: ACSF1 (trains to ~50 % only with this model, study-probes/README.md), the `cont`
    # arms and Pathfinder's extra correlation seeds;
    # Pathfinder is 16x16 (24x24 costs 2.2x and 32x32 3.8x as much per epoch).
    "cpu": {
        "threads": 1,
        "jobs": 2,
        "issue11": True,
        "protocol": dict(
            hsv_reg=dict(weight=1.0, kind="tail", channels=8),
            seeds=[0, 1, 2],
            corr_seeds=[3, 4, 5],
            cont=False,
            ranks=[16, 4],
            corr_rank=4,
            scratch_budgets=["main", "flops", "wall"],
        ),
        "tasks": {
            "digits256": task_spec(
                "digits256",
                protocol=dict(
                    pre_epochs=20,
                    main_epochs=8,
                    corr_epochs=[5, 10],
                    wall_ratio={16: 1.12, 4: 1.16},
                ),
            ),
            "pathfinder16": task_spec(
                "pathfinder16",
                protocol=dict(
                    pre_epochs=15,
                    main_epochs=10,
                    corr_epochs=[4, 8],
                    corr_seeds=[],
                    wall_ratio={16: 1.09, 4: 1.12},
                ),
            ),
            "osuleaf": task_spec(
                "osuleaf",
                protocol=dict(
                    pre_epochs=50,
                    main_epochs=20,
                    corr_epochs=[12, 25],
                    wall_ratio={16: 1.08, 4: 1.21},
                ),
            ),
        },
    },  # fmt: skip
}
