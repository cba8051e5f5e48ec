"""A recorded calibration for the plan's and the time budget's tests (stnas.pipeline.plan,
stnas.pipeline.budget): round numbers, so that the expected plans are worked by hand."""

import copy

# seconds
UNITS = {"supernet": {"step_s": 0.1, "phase_step_s": 0.2, "checkpoint_s": 1.0, "weights_s": 0.5, "log_s": 0.01},
         "search": {"eval_s": 0.3, "load_s": 2.0, "log_s": 0.01},
         "retrain": {"step_s": {"200k": 0.05, "300k": 0.07}, "eval_image_s": 0.001, "checkpoint_s": 0.4,
                     "log_s": 0.02},
         "export": {"export_s": 3.0}}
# the digits preset's data: 1,437 train (1,150 search-train, 287 search-val) and 360 test images
DIGITS = {"ranks": 1, "search_train": 1150, "search_val": 287, "train": 1437, "test": 360}

# a run of a few seconds on digits
TINY = ["device=cpu", "data.limit=256", "data.val_limit=64", "supernet.epochs=4", "pool.epochs=1", "pool.samples=2",
        "search.population=4", "search.parents=2", "search.generations=3", "search.budgets=[300k]",
        "retrain.epochs=2", "retrain.limit=256", "supernet.progress=false", "retrain.progress=false"]


class Recorded:
    """calibrate() answering ``units`` (5 s spent) and recording which stages it was asked for."""

    def __init__(self):
        self.units, self.calls = copy.deepcopy(UNITS), []

    def __call__(self, cfg, space, stages, device, **kw):
        self.calls.append(tuple(stages))
        return copy.deepcopy(self.units), 5.0, []
