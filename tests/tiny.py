"""The tiny sweep several test modules run (``from tiny import TINY_TOML``; the ``tiny_config`` and
``reference`` fixtures are in conftest.py): iris, two static groups (hidden [8] and [4]) x 4 variants."""

TINY_TOML = """\
# two static groups (hidden sizes) x 4 variants: the unit of resume is a group
[data]
name = "iris"

[model]
hidden = [8]

[train]
optimizer = "sgd"
learning_rate = 0.1
steps = 20
batch_size = 16
eval_every = 10

[sweep]
method = "grid"
mix_architectures = false  # two static groups: hidden [8] and [4] train apart

[sweep.axes]
hidden = [[8], [4]]
activation = ["tanh", "relu"]
seed = [0, 1]
"""
