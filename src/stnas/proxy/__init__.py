"""The share-parameter proxy: scoring architectures with supernet weights (scorer), the score
type (score), ensembles of supernets (ensemble), few-shot children (few_shot)."""
