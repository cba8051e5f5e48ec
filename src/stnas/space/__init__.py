"""The search space: the op library (ops), the space and its cost model (searchspace),
architectures as data (arch), sampling (sampling), the space derived from the data's shape
(derive), the packaged presets and the one reader of spaces and architectures (catalog)."""
