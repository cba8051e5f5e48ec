"""Networks: the stand-alone network of one architecture (model) and the weight-sharing
supernet (supernet)."""
