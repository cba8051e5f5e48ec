"""Data: named datasets and deterministic loaders (datasets), the user's image folders and
``.npz`` arrays (userdata), stratified splits (splits)."""
