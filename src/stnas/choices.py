"""The choice lists of the run config: one home for each, free of torch.

The config check (``stnas.config``) and the CLI's ``choices=`` read them from here, and so
do the modules that act on them, so that a list is written once and ``stnas.config``
imports without torch.
"""

DATASETS = ("digits", "fashion-mnist", "cifar10", "cifar100", "imagenet")  # stnas.data
SAMPLING_MODES = ("topology", "architecture", "density", "fair", "sandwich")  # SearchSpace.sample / sample_at
OPTIMIZERS = ("sgd", "sgld")  # the supernet's sampling phase (stnas.train)
SCHEDULES = ("cosine", "step", "constant")  # stnas.train.lr_at
AMP_MODES = ("auto", "bf16", "off")  # stnas.train.use_amp
CHANNELS_LAST = ("auto", "on", "off")  # stnas.train.use_channels_last
PROXY_MODES = ("single", "stabilized", "averaged")  # stnas.proxy
PROXY_METRICS = ("top1", "loss")  # stnas.proxy
SEARCH_ALGORITHMS = ("evolution", "random")  # stnas.search
SEARCH_SELECT = ("best", "largest_tied")  # stnas.search
LATENCY_RUNTIMES = ("torch", "onnxruntime")  # stnas.latency_measure
LATENCY_DEVICES = ("cpu", "cuda")  # stnas.latency_measure
