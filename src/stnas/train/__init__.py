"""Training: the loop shared by supernet training and retraining (engine), SGLD (sgld), the
parameter-sample pool (pool), the one BN recalibration (recalibrate), supernet-inherited
weights (inherited)."""
