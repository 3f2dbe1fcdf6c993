"""Running models: the Trainer factory, the one batched inference path, checkpoints, exported
graphs.
"""
