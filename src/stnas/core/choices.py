"""The choice lists of the run config: one home for each, free of torch.

The config check (``stnas.pipeline.config``) and the CLI's ``choices=`` read them from here, and so
do the modules that act on them, so that a list is written once and ``stnas.pipeline.config``
imports without torch.
"""

DATASETS = ("digits", "fashion-mnist", "cifar10", "cifar100", "imagenet")  # stnas.data.datasets
SAMPLING_MODES = ("topology", "architecture", "density", "fair", "sandwich")  # SearchSpace.sample / sample_at
OPTIMIZERS = ("sgd", "sgld")  # the supernet's sampling phase (stnas.train.engine)
SCHEDULES = ("cosine", "step", "constant")  # stnas.train.engine.lr_at
AMP_MODES = ("auto", "bf16", "off")  # stnas.train.engine.use_amp
CHANNELS_LAST = ("auto", "on", "off")  # stnas.train.engine.use_channels_last
PROXY_MODES = ("single", "stabilized", "averaged")  # stnas.proxy.scorer
PROXY_METRICS = ("top1", "loss")  # stnas.proxy.scorer
SEARCH_ALGORITHMS = ("evolution", "random")  # stnas.search.evolution
SEARCH_SELECT = ("best", "largest_tied")  # stnas.search.evolution
LATENCY_RUNTIMES = ("torch", "onnxruntime")  # stnas.latency.measure
LATENCY_DEVICES = ("cpu", "cuda")  # stnas.latency.measure
